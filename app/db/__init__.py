"""Data access: the engine, the models and the one tenant-scoped transaction."""
