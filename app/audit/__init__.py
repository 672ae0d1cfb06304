"""The append-only, SHA-256-chained audit trail."""
