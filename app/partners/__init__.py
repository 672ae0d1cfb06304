"""Partner systems: firm API keys, scopes, and persisted (trusted and automatic) documents."""
