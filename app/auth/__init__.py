"""Authentication: who is calling, and for which firm."""
