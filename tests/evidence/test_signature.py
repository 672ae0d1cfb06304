"""Evidence packs are certified with a PAdES signature: a reader that trusts the published
certificate sees a downloaded pack as signed by CoverProof and unaltered, and any change to the
file breaks the signature. The pack key is derived from the platform key."""

from __future__ import annotations

import asyncio
import io
from urllib.parse import urlsplit

import pytest
from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis.policy_api import ModificationLevel
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from xhtml2pdf import pisa  # type: ignore[import-untyped]

from app.audit.signing import SigningKey
from app.evidence.signature import FIELD_NAME, PackSigner, pack_signer
from tests.browser import Browser, signed_up
from tests.evidence.support import (
    PACK,
    RETRY,
    audit_of,
    generate,
    pack_row,
    pdf_text,
    stored_keys,
    submitted_declaration,
)
from tests.mail.smtp import SmtpServer

CERTIFICATE_URL = "/.well-known/coverproof-pack-certificate.pem"


async def _validated(pdf: bytes, trusted: x509.Certificate) -> PdfSignatureStatus:
    """The pack's one signature, validated with ``trusted`` as the only trust anchor."""
    signatures = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert [s.field_name for s in signatures] == [FIELD_NAME]
    anchor = asn1_x509.Certificate.load(trusted.public_bytes(serialization.Encoding.DER))
    return await async_validate_pdf_signature(
        signatures[0], signer_validation_context=ValidationContext(trust_roots=[anchor])
    )


def _platform_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


async def _signed_pdf(signer: PackSigner, text: str) -> bytes:
    out = io.BytesIO()
    assert not pisa.CreatePDF(f"<p>{text}</p>", dest=out).err
    # The signing runs its own event loop, so off this one (as the app signs in a worker).
    return await asyncio.to_thread(signer.sign, out.getvalue(), "test-pack")


async def test_a_downloaded_pack_is_certified_by_the_published_certificate(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    await signed_up(browser, smtp, firm="Signed Packs Ltd")
    await submitted_declaration(browser, smtp, auth_app, "Carol Signer")
    pack = await generate(browser, "Signed pack")
    assert pack["status"] == "READY", pack
    body = await browser.gql(PACK, {"id": pack["id"]})
    download = await browser.client.get(urlsplit(body["data"]["evidencePack"]["downloadUrl"]).path)
    assert download.status_code == 200, download.text
    pdf = download.content

    served = await browser.client.get(CERTIFICATE_URL)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/x-pem-file")
    certificate = x509.load_pem_x509_certificate(served.content)
    status = await _validated(pdf, certificate)
    assert (status.intact, status.valid, status.trusted, status.bottom_line) == (
        True,
        True,
        True,
        True,
    )
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert status.modification_level == ModificationLevel.NONE
    assert status.docmdp_ok
    assert status.md_algorithm == "sha256"
    assert status.signing_cert.dump() == certificate.public_bytes(serialization.Encoding.DER)
    signature = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    assert signature.docmdp_level == MDPPerm.NO_CHANGES  # a certification: no change allowed
    assert str(signature.sig_object[pdf_name("/Reason")]) == (
        f"Evidence pack {pack['id']}, issued by CoverProof"
    )
    # The served certificate is the platform key's, and the text is still the pack's text.
    platform = auth_app.state.coverproof.signing_key
    assert certificate == pack_signer(platform).certificate
    text = pdf_text(pdf)
    assert "Carol Signer" in text
    assert "certified by CoverProof" in text


async def test_a_pack_that_cannot_be_signed_fails_and_stores_nothing_then_retry_works(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await signed_up(browser, smtp, firm="Unsigned Ltd")
    real = PackSigner.sign

    def broken(self: PackSigner, pdf: bytes, pack_id: str) -> bytes:
        raise ValueError("the signing key is unusable")

    monkeypatch.setattr(PackSigner, "sign", broken)
    pack = await generate(browser, "Never unsigned")
    assert pack["status"] == "FAILED", pack
    assert pack["failureReason"] == "The PDF could not be signed."
    row = await pack_row(superuser_engine, pack["id"])
    assert (row.status, row.storage_key, row.sha256) == ("failed", None, None)
    failed = await audit_of(superuser_engine, pack["id"])
    assert [a.action for a in failed] == ["evidence_pack.requested", "evidence_pack.failed"]
    assert failed[1].details["reason"] == "The PDF could not be signed."
    assert "unusable" not in str(failed[1].details)  # the cause stays in the server's log

    monkeypatch.setattr(PackSigner, "sign", real)
    body = await browser.gql(RETRY, {"id": pack["id"]})
    assert "errors" not in body, body
    retried = body["data"]["retryEvidencePack"]["pack"]
    assert retried["status"] == "READY", retried


async def test_a_pack_its_own_reader_cannot_read_back_fails_and_stores_nothing(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signed file that pypdf cannot open (so cannot count its pages) is no pack: it fails
    with a reason, is recorded as failed, and nothing is stored or offered for download."""
    await signed_up(browser, smtp, firm="Unreadable Ltd")
    storage = auth_app.state.coverproof.storage
    stored = stored_keys(storage, monkeypatch)

    def unreadable(self: PackSigner, pdf: bytes, pack_id: str) -> bytes:
        return b"%PDF-1.7\n" + pdf[: len(pdf) // 2]  # cut off: no trailer, no xref

    monkeypatch.setattr(PackSigner, "sign", unreadable)
    pack = await generate(browser, "Half a pack")
    assert pack["status"] == "FAILED", pack
    assert pack["failureReason"] == "The PDF could not be read back."
    assert (pack["sha256"], pack["pageCount"]) == (None, None)
    row = await pack_row(superuser_engine, pack["id"])
    assert (row.status, row.storage_key, row.sha256) == ("failed", None, None)
    failed = await audit_of(superuser_engine, pack["id"])
    assert [a.action for a in failed] == ["evidence_pack.requested", "evidence_pack.failed"]
    assert failed[1].details == {"reason": "The PDF could not be read back.", "stage": "render"}
    assert stored == []


async def test_a_changed_byte_breaks_the_signature() -> None:
    signer = pack_signer(_platform_key())
    pdf = await _signed_pdf(signer, "Total declarations: 17")
    assert (await _validated(pdf, signer.certificate)).bottom_line
    # The text sits in a compressed stream; change a byte of the stream itself.
    start = pdf.index(b"stream\n") + len(b"stream\n")
    altered = bytearray(pdf)
    altered[start + 10] ^= 0x01
    status = await _validated(bytes(altered), signer.certificate)
    assert not status.intact
    assert not status.bottom_line


async def test_a_change_appended_after_signing_is_reported() -> None:
    signer = pack_signer(_platform_key())
    pdf = await _signed_pdf(signer, "Total declarations: 17")
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.root[pdf_name("/Lang")] = pdf_name("/fr")  # an incremental update, as an editor saves
    writer.update_root()  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    status = await _validated(out.getvalue(), signer.certificate)
    assert status.intact  # the signed bytes are still there...
    assert status.coverage != SignatureCoverageLevel.ENTIRE_FILE  # ...but no longer all of it
    assert status.modification_level != ModificationLevel.NONE
    assert not status.docmdp_ok
    assert not status.bottom_line


async def test_a_pack_signed_with_another_platform_key_is_not_trusted() -> None:
    ours, theirs = pack_signer(_platform_key()), pack_signer(_platform_key())
    pdf = await _signed_pdf(theirs, "Total declarations: 17")
    status = await _validated(pdf, ours.certificate)
    assert status.intact  # sound, but not ours
    assert status.valid
    assert not status.trusted
    assert not status.bottom_line


# The certificate a fixed platform key makes. Firms trust it in their readers: if the derivation
# or any field of the certificate changed, every firm's trust would silently lapse.
PINNED_KEY = bytes(range(32))
PINNED_FINGERPRINT = "ac7e5dc95af0954d25134e8a13512987a9208ac8615800cf104c9b2a06f6a5a2"


def test_a_platform_key_always_makes_the_same_certificate() -> None:
    signer = pack_signer(SigningKey(Ed25519PrivateKey.from_private_bytes(PINNED_KEY)))
    assert signer.certificate.fingerprint(hashes.SHA256()).hex() == PINNED_FINGERPRINT
    platform_id = SigningKey(Ed25519PrivateKey.from_private_bytes(PINNED_KEY)).key_id
    serial = signer.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert [a.value for a in serial] == [platform_id]  # which platform key made it


def test_the_pack_key_is_derived_from_the_platform_key() -> None:
    platform = _platform_key()
    raw = platform.private.private_bytes_raw()
    again = pack_signer(SigningKey(Ed25519PrivateKey.from_private_bytes(raw)))
    signer = pack_signer(platform)
    assert signer.certificate.public_bytes(serialization.Encoding.DER) == (
        again.certificate.public_bytes(serialization.Encoding.DER)
    )
    assert pack_signer(_platform_key()).certificate != signer.certificate
    public = signer.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)  # what every PDF reader checks
    assert public == signer.key.public_key()
    signer.certificate.verify_directly_issued_by(signer.certificate)  # self-signed
    constraints = signer.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not constraints.value.ca
    usage = signer.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.content_commitment
    assert not usage.key_cert_sign
