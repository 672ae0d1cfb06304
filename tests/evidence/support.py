"""Shared pieces of the evidence-pack tests: the operations, a submitted declaration made the
way a firm and its recipient make one (through HTTP, with real mail), and PDF/audit readers."""

from __future__ import annotations

import hashlib
import io
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import aioboto3  # type: ignore[import-untyped]
import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.evidence import sweep
from app.evidence.storage import StorageError
from tests.browser import Browser, browser_for, new_email
from tests.declarations.test_loop import CREATE, FIT, FORM, LINK, SEND, SUBMIT, valid_answers
from tests.mail.smtp import SmtpServer

PACK_FIELDS = """id title status failureReason sha256 sizeBytes pageCount createdAt completedAt
  scope { from to declarationIds counterpartyIds }"""
GENERATE = (
    "mutation($i: EvidencePackGenerateInput!) { generateEvidencePack(input: $i) { pack { "
    + PACK_FIELDS
    + " } } }"
)
RETRY = "mutation($id: UUID!) { retryEvidencePack(id: $id) { pack { " + PACK_FIELDS + " } } }"
# A pack made, then the request's second mutation refused (an unknown template): the request's
# transaction is rolled back, the pack's row with it.
GENERATE_THEN_FAIL = """mutation($i: EvidencePackGenerateInput!, $d: DeclarationCreateInput!) {
  generateEvidencePack(input: $i) { pack { id } }
  createDeclaration(input: $d) { declaration { id } } }"""
PACK = "query($id: UUID!) { evidencePack(id: $id) { id status sha256 downloadUrl } }"
PACKS = """query($first: Int! = 20, $after: String) { evidencePacks(first: $first, after: $after) {
  edges { cursor node { id title status } } pageInfo { hasNextPage endCursor } } }"""


def period(days: int = 1) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=days)).isoformat(), "to": today.isoformat()}


@dataclass(frozen=True)
class Submitted:
    id: str
    recipient_name: str
    receipt: str
    answers: dict[str, Any]


async def submitted_declaration(
    firm: Browser, smtp: SmtpServer, app: Starlette, recipient_name: str
) -> Submitted:
    """Create and send a fitness-and-propriety declaration, then answer it by the emailed link."""
    email = new_email()
    variables = {
        "i": {"templateId": str(FIT.id), "recipientName": recipient_name, "recipientEmail": email}
    }
    created = await firm.gql(CREATE, variables)
    declaration_id = created["data"]["createDeclaration"]["declaration"]["id"]
    sent = await firm.gql(SEND, {"id": declaration_id})
    assert sent["data"]["sendDeclaration"]["declaration"]["status"] == "SENT", sent
    await smtp.wait_for(lambda _: bool(smtp.to(email)))
    body = smtp.to(email)[-1].get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(body)
    assert found, body
    token = unquote(found.group(1))
    recipient = browser_for(app)
    async with recipient.client:
        form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        answers = valid_answers(form["questions"])
        submission = {
            "answers": answers,
            "attestationAccepted": True,
            "signatureName": recipient_name,
        }
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
    assert "errors" not in done, done
    receipt = done["data"]["submitDeclaration"]["responseSha256"]
    return Submitted(declaration_id, recipient_name, receipt, answers)


async def generate(firm: Browser, title: str, **scope: Any) -> dict[str, Any]:
    body = await firm.gql(GENERATE, {"i": {"title": title, **period(), **scope}})
    assert "errors" not in body, body
    pack: dict[str, Any] = body["data"]["generateEvidencePack"]["pack"]
    return pack


async def download(firm: Browser, pack_id: str) -> httpx.Response:
    """The pack's download, by the signed link the API gives the firm."""
    read = await firm.gql(PACK, {"id": pack_id})
    url = read["data"]["evidencePack"]["downloadUrl"]
    return await firm.client.get(urlsplit(url).path)


def pdf_text(data: bytes, first: int | None = None) -> str:
    """The PDF's text (of its first ``first`` pages and its last, if given), as pypdf reads it."""
    pages = list(PdfReader(io.BytesIO(data)).pages)
    if first is not None:
        pages = [*pages[:first], pages[-1]]
    return "\n".join(page.extract_text() for page in pages)


async def audit_of(engine: AsyncEngine, pack_id: str) -> list[Any]:
    """The pack's audit entries, in chain order (read as the superuser, outside RLS)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select seq, firm_id, action, actor_type, details, hash from audit_log "
                "where target_id = :id order by seq"
            ),
            {"id": pack_id},
        )
        return list(rows.all())


async def hash_at(engine: AsyncEngine, firm_id: uuid.UUID, seq: int) -> str:
    """The hex hash of the firm's audit entry ``seq``."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select hash from audit_log where firm_id = :firm and seq = :seq"),
            {"firm": firm_id, "seq": seq},
        )
        return bytes(found.scalar_one()).hex()


async def pack_row(engine: AsyncEngine, pack_id: str) -> Any:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select * from evidence_packs where id = :id"), {"id": uuid.UUID(pack_id)}
        )
        return rows.one()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def s3_client(endpoint_url: str) -> AsyncIterator[Any]:
    """A plain aioboto3 client of the test S3 server, for setting up and inspecting buckets."""
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        yield client


def stored_keys(storage: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys ``storage`` stores objects under from now on (it still stores them)."""
    stored: list[str] = []
    put = storage.put

    async def recorded(key: str, data: bytes, sha256: bytes) -> str | None:
        stored.append(key)
        version: str | None = await put(key, data, sha256)
        return version

    monkeypatch.setattr(storage, "put", recorded)
    return stored


async def generate_then_fail(firm: Browser, title: str) -> None:
    """Run GENERATE_THEN_FAIL, which must be refused whole."""
    unknown = {
        "templateId": str(uuid.uuid4()),
        "recipientName": "Nobody",
        "recipientEmail": new_email(),
    }
    body = await firm.gql(GENERATE_THEN_FAIL, {"i": {"title": title, **period()}, "d": unknown})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body
    assert body["data"] is None


async def orphaned_pdf(firm: Browser, storage: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The key of a pack's PDF stored by a request that then failed, left behind as a process
    that died before its rollback's undo ran would leave it: no pack names it."""

    async def never(key: str, version: str | None = None) -> None:
        """The process died: nothing deletes it."""

    with monkeypatch.context() as patched:
        stored = stored_keys(storage, patched)
        patched.setattr(storage, "delete", never)
        await generate_then_fail(firm, "Orphaned")
    [key] = stored
    return key


async def swept_once_old_enough(
    app: Starlette, firm: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep deletes a stored PDF no pack names, once it is older than its grace period, and
    leaves the firm's READY pack's PDF, which downloads as before."""
    state = app.state.coverproof
    kept = await generate(firm, "Kept")
    assert kept["status"] == "READY", kept
    orphan = await orphaned_pdf(firm, state.storage, monkeypatch)
    assert await state.storage.read(orphan)
    # Young, it might be a pack's whose transaction is still open: it stays.
    await sweep.sweep(state.sessions, state.storage)
    assert await state.storage.read(orphan)
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert await sweep.sweep(state.sessions, state.storage, before=later) == [orphan]
    with pytest.raises(StorageError):
        await state.storage.read(orphan)
    assert await sweep.sweep(state.sessions, state.storage, before=later) == []
    downloaded = await download(firm, kept["id"])
    assert downloaded.status_code == 200, downloaded.text
    assert hashlib.sha256(downloaded.content).hexdigest() == kept["sha256"]
