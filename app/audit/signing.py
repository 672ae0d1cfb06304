"""The platform's Ed25519 key that signs audit checkpoints.

Development keeps a key file in the data directory (made once, mode 0600); production takes
``COVERPROOF_AUDIT_SIGNING_KEY`` (a PEM private key) and refuses to start without it. The public
key is published at ``/.well-known/coverproof-audit-key`` so anyone can check a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import canonical
from app.config import ConfigError, Settings

KEY_FILE = "audit_signing_key.pem"


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, payload: bytes) -> bytes:
        return self.private.sign(payload)

    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

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
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(["COVERPROOF_AUDIT_SIGNING_KEY must be an Ed25519 private key."])
    return SigningKey(private)


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
