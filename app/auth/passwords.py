"""Passwords: Argon2id hashes (OWASP parameters) and a strength check.

Only the hash is stored; the plaintext is never written, logged or sent anywhere. Hashing runs
off the event loop. An unknown email is checked against a dummy hash so that a wrong password
and an unknown address take about the same time.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from app.errors import field_error

MIN_LENGTH, MAX_LENGTH = 12, 128
MIN_SCORE = 3  # zxcvbn 0-4: "safely unguessable" starts at 3

# OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


# zxcvbn refuses (ValueError) a password longer than this, as its work grows faster than the
# length: the first SCORED characters are scored, off the event loop (tens of milliseconds).
SCORED = 72


async def check_strength(password: str, *, email: str, field: str = "password") -> None:
    """Refuse short, long and guessable passwords, with a message a person can act on."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        message = f"Use {MIN_LENGTH} to {MAX_LENGTH} characters."
    elif await asyncio.to_thread(_score, password[:SCORED], email) < MIN_SCORE:
        message = "This password is too easy to guess; try a longer passphrase."
    else:
        return
    raise field_error(field, message)


def _score(password: str, email: str) -> int:
    return int(zxcvbn(password, user_inputs=[email, *email.split("@")])["score"])


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; a missing hash still costs one verification."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
