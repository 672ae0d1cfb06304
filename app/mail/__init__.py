"""Transactional mail: an outbox row written with the token, delivered over SMTP by a sender."""
