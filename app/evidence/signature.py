"""PAdES signatures on evidence packs, so a PDF reader shows a pack as certified and unaltered.

PDF readers check ECDSA P-256 signatures everywhere; Adobe's list of supported algorithms has
no EdDSA. So the pack key is an ECDSA P-256 key derived from the platform's Ed25519 key with
HKDF: nothing new to configure, keep or rotate, and a new platform key makes a new pack key.

Its certificate is self-signed and the same bytes every time for the same platform key (a
deterministic ECDSA signature, fixed validity, serial from the public key), published at
``/.well-known/coverproof-pack-certificate.pem``. A firm or the regulator that trusts it once
in their reader sees every pack as certified by CoverProof with no change allowed since.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import keys as asn1_keys  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.audit.signing import SigningKey

# The order of P-256's group: a derived scalar must lie in [1, n - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_DERIVATION = b"coverproof evidence-pack signing key v1"
_VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
_VALID_UNTIL = datetime(2126, 1, 1, tzinfo=UTC)
FIELD_NAME = "CoverProof"


@dataclass(frozen=True)
class PackSigner:
    """The pack key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, pdf: bytes, pack_id: str) -> bytes:
        """The PDF with a PAdES B-B certification signature that allows no later change
        (blocking, and it runs its own event loop: call it from a worker thread)."""
        certificate = asn1_x509.Certificate.load(
            self.certificate.public_bytes(serialization.Encoding.DER)
        )
        signer = signers.SimpleSigner(
            signing_cert=certificate,
            signing_key=asn1_keys.PrivateKeyInfo.load(
                self.key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
            cert_registry=SimpleCertificateStore.from_certs([certificate]),  # type: ignore[no-untyped-call]
        )
        metadata = signers.PdfSignatureMetadata(
            field_name=FIELD_NAME,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            certify=True,
            docmdp_permissions=fields.MDPPerm.NO_CHANGES,
            name="CoverProof",
            reason=f"Evidence pack {pack_id}, issued by CoverProof",
        )
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        signed: io.BytesIO = signers.sign_pdf(writer, metadata, signer=signer)
        return signed.getvalue()


# Keyed by the key object (cryptography keys compare by identity): the app loads one.
@functools.lru_cache(maxsize=4)
def pack_signer(platform: SigningKey) -> PackSigner:
    """The pack key derived from the platform key, with its self-signed certificate; its
    subject names the platform key's id, so each key's certificate can be told apart."""
    seed = platform.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    # 48 bytes reduced modulo a 256-bit order: the bias is below 2^-128.
    material = HKDF(hashes.SHA256(), 48, salt=None, info=_DERIVATION).derive(seed)
    scalar = int.from_bytes(material) % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    public = key.public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "CoverProof evidence packs"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CoverProof"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, platform.key_id),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(int.from_bytes(hashlib.sha256(der).digest()[:16]) >> 1)
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return PackSigner(key, certificate)
