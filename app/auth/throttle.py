"""The password sign-in throttle's key for an address: the same for every address, registered
or not, so the throttle cannot tell which are (migration 0021)."""

from __future__ import annotations

import hashlib
import hmac


def address_key(secret_key: str, email: str) -> bytes:
    """The app's HMAC-SHA-256 of the lower-cased address: not a plain hash, which a guess of
    the address would reverse."""
    message = b"coverproof.sign-in-failures:" + email.strip().lower().encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
