"""Sealing outbox bodies: AES-256-GCM under a key derived from the server secret.

Bodies carry links with live tokens, so they rest in the database sealed and are erased once
delivered. ``associated`` data (the row id and recipient) is authenticated but not encrypted:
a sealed body moved to another row, or a row whose recipient was changed, no longer opens.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"coverproof mail outbox"
_NONCE_BYTES = 12


class SealBroken(Exception):
    """A sealed body failed authentication: altered, truncated, or sealed under another key."""


def mail_key(secret_key: str) -> bytes:
    """The 32-byte outbox key, derived (HKDF-SHA256) so the secret itself is never a cipher key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(secret_key.encode())


def key_id(key: bytes) -> bytes:
    """8 bytes naming a key without revealing it: a sender claims only mail it can open, so
    instances on an old key (during rotation) never give up mail sealed with the new one."""
    return hashlib.sha256(b"coverproof mail key id" + key).digest()[:8]


def seal(key: bytes, plaintext: bytes, associated: bytes = b"") -> bytes:
    """Encrypt and authenticate; returns nonce || ciphertext (with its 16-byte tag)."""
    # A random 96-bit nonce per message: far below the birthday bound at outbox volumes.
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes = b"") -> bytes:
    """Decrypt a ``seal`` result; raise SealBroken if any byte (or the associated data) changed."""
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated)
    except Exception as exc:  # InvalidTag, or ValueError for a truncated nonce
        raise SealBroken("the sealed mail body does not open") from exc
