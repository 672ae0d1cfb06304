"""Evidence packs: a firm's PDF proof of what was declared and what happened."""
