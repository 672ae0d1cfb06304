"""The platform's Ed25519 key that signs audit checkpoints.

Development keeps a key file in the data directory (made once, mode 0600); production takes
``COVERPROOF_AUDIT_SIGNING_KEY`` (a PEM private key) and refuses to start without it. The public
key is published at ``/.well-known/coverproof-audit-key`` so anyone can check a checkpoint; after
a rotation, ``COVERPROOF_AUDIT_RETIRED_PUBLIC_KEYS`` holds the earlier keys' public halves, so
checkpoints they signed still verify (all are published at
``/.well-known/coverproof-audit-keys.pem``). A key that leaked is revoked by listing its id in
``COVERPROOF_AUDIT_REVOKED_KEY_IDS``: whoever holds it could sign a checkpoint over a rewritten
chain, so nothing it signed is relied on any more, and it is no longer published.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import canonical
from app.config import ConfigError, Settings

KEY_FILE = "audit_signing_key.pem"


_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    # Not part of the key's identity (nor its hash: the pack signer is cached by key).
    retired: tuple[Ed25519PublicKey, ...] = field(default=(), compare=False)
    # The ids of revoked keys: their checkpoints are ignored wherever checkpoints are relied on.
    revoked: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def trusted(self) -> Mapping[str, Ed25519PublicKey]:
        """Every key a checkpoint of ours may name, by key id: this one and the retired ones
        not revoked."""
        return {
            key_id(public): public
            for public in (*self.retired, self.public)
            if key_id(public) not in self.revoked
        }

    @property
    def revoked_keys(self) -> Mapping[str, Ed25519PublicKey]:
        """The revoked keys whose public halves are still configured (as retired), by key id:
        what a revoked key's checkpoints are checked against, to tell its use from a forgery."""
        return {key_id(public): public for public in self.retired if key_id(public) in self.revoked}

    def trusted_pem(self) -> str:
        """The trusted keys' public halves, this one first."""
        keys = (self.public, *self.retired)
        return "".join(_pem(public) for public in keys if key_id(public) not in self.revoked)

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, payload: bytes) -> bytes:
        return self.private.sign(payload)

    def public_pem(self) -> str:
        return _pem(self.public)

    def public_jwk(self) -> dict[str, str]:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.key_id,
            "use": "sig",
            "alg": "EdDSA",
        }


def _pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def retired_keys(text: str) -> tuple[Ed25519PublicKey, ...]:
    """The Ed25519 public keys in ``text`` (PEM blocks, in any number); a ConfigError for
    anything else, so a mistyped key stops the start instead of failing every old checkpoint."""
    blocks = _PEM_BLOCK.findall(text)
    if _PEM_BLOCK.sub("", text).strip():
        raise ConfigError(["COVERPROOF_AUDIT_RETIRED_PUBLIC_KEYS must hold only PEM public keys."])
    keys = []
    for block in blocks:
        try:
            public = serialization.load_pem_public_key(block.encode())
        except (ValueError, UnsupportedAlgorithm):
            public = None
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(["COVERPROOF_AUDIT_RETIRED_PUBLIC_KEYS must be Ed25519 keys."])
        keys.append(public)
    return tuple(keys)


def revoked_key_ids(text: str) -> frozenset[str]:
    """The key ids in ``text`` (separated by commas or spaces); a ConfigError for anything
    that is not a key id. A well-formed id of no key of ours is accepted: the start-up log
    lists the trusted keys, where a leaked key still trusted shows."""
    ids = frozenset(part for part in re.split(r"[,\s]+", text.strip()) if part)
    if any(not _KEY_ID.match(one) for one in ids):
        raise ConfigError(
            ["COVERPROOF_AUDIT_REVOKED_KEY_IDS must list key ids: 16 lower-case hex digits each."]
        )
    return ids


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load(settings: Settings) -> SigningKey:
    """The configured key; in development, generated once into the data directory."""
    if settings.audit_signing_key is not None:
        pem = settings.audit_signing_key.get_secret_value().encode()
    elif settings.is_production:
        raise ConfigError(
            ["COVERPROOF_AUDIT_SIGNING_KEY (an Ed25519 PEM key) must be set in production."]
        )
    else:
        path = settings.data_dir / KEY_FILE
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_bytes(
                Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        pem = path.read_bytes()
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # Refused as configuration: each worker of `serve --workers` failed with a traceback
        # of its own, started again without end.
        problem = "COVERPROOF_AUDIT_SIGNING_KEY must be an unencrypted PEM private key."
        raise ConfigError([problem]) from error
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(["COVERPROOF_AUDIT_SIGNING_KEY must be an Ed25519 private key."])
    revoked = revoked_key_ids(settings.audit_revoked_key_ids)
    if key_id(private.public_key()) in revoked:
        raise ConfigError(["COVERPROOF_AUDIT_SIGNING_KEY is revoked: configure a new key."])
    return SigningKey(private, retired_keys(settings.audit_retired_public_keys), revoked)


def checkpoint_payload(
    firm_id: uuid.UUID, seq: int, head_hash: bytes, signed_at: datetime
) -> bytes:
    """What a checkpoint's signature covers: canonical JSON of the four fields."""
    return canonical.encode(
        {
            "firm_id": str(firm_id),
            "seq": seq,
            "head_hash": head_hash.hex(),
            "signed_at": canonical.timestamp(signed_at),
        }
    )


def verify_signature(public: Ed25519PublicKey, payload: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, payload)
    except InvalidSignature:
        return False
    return True
