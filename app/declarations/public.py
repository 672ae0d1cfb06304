"""Declarations, recipients' side: the public form and the one public submit mutation.

A recipient has no account: their link's token is resolved by a narrow lookup to one
declaration and its firm, and everything after runs in that firm's tenant context. Viewing
never consumes the token; submitting does, in one conditional UPDATE, so of concurrent
submissions exactly one wins.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app import idempotency
from app.audit import canonical, chain
from app.audit.actions import Action
from app.auth.actor import Actor, ActorType, Role
from app.auth.env import AuthEnv
from app.db import calls
from app.db.models import Declaration, Firm
from app.db.tenant import bind_tenant
from app.declarations import links, mails
from app.declarations.answers import validate_answers
from app.declarations.schemas import Submission
from app.declarations.templates import spec_from_snapshot
from app.errors import (
    AddressUnmailable,
    AppError,
    BadUserInput,
    NotFound,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from app.ratelimit.policies import Policy
from app.visible import shows_anything

log = logging.getLogger("coverproof.declarations")
_SUBMIT = "submitDeclaration"


def recipient(env: AuthEnv, declaration: Declaration) -> Actor:
    return Actor(ActorType.RECIPIENT, declaration.id, declaration.firm_id, Role.VIEWER, ip=env.ip)


async def _found(session: AsyncSession, env: AuthEnv, token: str) -> tuple[Declaration, bytes]:
    """The token's declaration, bound as tenant, whatever its state."""
    await env.limit(Policy.PUBLIC_TOKEN_PER_IP, env.ip_key)
    token_hash = links.token_hash(env.secret_key, token)
    await env.limit(Policy.PUBLIC_TOKEN_PER_TOKEN, token_hash.hex())
    found = await calls.declaration_by_token(session, token_hash)
    if found is None:
        raise await _retired(session, env, token_hash)
    await bind_tenant(session, found.firm_id, found.declaration_id)
    declaration = await session.get(Declaration, found.declaration_id)
    if declaration is None:
        raise TokenInvalid()
    return declaration, token_hash


# What the recipient of a retired link is told; the code stays TOKEN_INVALID.
_RETIRED = {
    "replaced": "This link has been replaced by a newer one: use the link in the most recent "
    "email you received about this request.",
    "withdrawn": "This request has been withdrawn by the firm that sent it.",
    "answered": "This request has already been answered. If you did not answer it, tell the "
    "firm that sent it at once.",
}


async def _retired(session: AsyncSession, env: AuthEnv, token_hash: bytes) -> AppError:
    """The refusal of a link that is not live: a link that was replaced, withdrawn or answered
    says so and goes on its declaration's record (a recipient, or whoever holds an old email,
    still trying it); any other is simply not valid, and belongs to no firm to record it in."""
    retired = await calls.retired_link(session, token_hash)
    if retired is None:
        return TokenInvalid()
    refusal = TokenInvalid(_RETIRED[retired.reason])
    return await _audited(refusal, env, retired.firm_id, retired.declaration_id, retired.reason)


async def _refuse_if_closed(env: AuthEnv, declaration: Declaration) -> None:
    refusal = _refusal(declaration)
    if refusal is not None:
        raise await _audited(refusal, env, declaration.firm_id, declaration.id)


def _refusal(declaration: Declaration) -> AppError | None:
    if declaration.status == "submitted":
        return TokenUsed()
    if declaration.status not in ("sent", "opened"):
        return TokenInvalid()
    expires = declaration.token_expires_at
    if expires is None or expires <= datetime.now(UTC):
        return TokenExpired()
    return None


def _lost(declaration: Declaration) -> AppError:
    """Why a submission that passed ``_refuse_if_closed`` then matched no row is refused, its
    link still the same (a changed one is ``_retired``'s to refuse)."""
    return _refusal(declaration) or TokenUsed()


async def _audited(
    error: AppError,
    env: AuthEnv,
    firm_id: uuid.UUID,
    declaration_id: uuid.UUID,
    link: str | None = None,
) -> AppError:
    """A replayed, expired or retired (``link``: replaced, withdrawn, answered) link is on the
    record (without the token) after the rollback: once per declaration, reason and hour
    (Policy.REFUSAL_RECORDS), so that replaying a link cannot flood the firm's chain, and with
    it the audit appendix of its evidence packs."""
    code = error.code
    reason = code if link is None else f"{code}:{link}"
    if not await env.room_to_record((Policy.REFUSAL_RECORDS, f"{declaration_id}:{reason}")):
        return error  # already on the record this hour
    details = {"code": code} if link is None else {"code": code, "link": link}

    async def record(session: AsyncSession) -> None:
        await bind_tenant(session, firm_id, declaration_id)
        actor = Actor(ActorType.RECIPIENT, declaration_id, firm_id, Role.VIEWER, ip=env.ip)
        await chain.record(
            session,
            actor,
            Action.DECLARATION_TOKEN_REFUSED,
            "declaration",
            declaration_id,
            details,
        )

    return error.on_record(record)


async def recipient_form(
    session: AsyncSession, env: AuthEnv, token: str
) -> tuple[Declaration, str]:
    """The form for a link: the declaration and the firm's name. The first view marks the
    declaration opened (and is audited); viewing never consumes the token."""
    declaration, token_hash = await _found(session, env, token)
    # Locked, then checked: a reissue or withdrawal committed since the link was looked up
    # kills it at once, and one waiting on this lock finds the link as this view left it.
    await session.refresh(declaration, with_for_update={"key_share": True})
    if declaration.token_hash != token_hash:
        raise await _retired(session, env, token_hash)
    await _refuse_if_closed(env, declaration)
    # Conditional: a view racing a submission (or a revocation) must never move it back.
    opened = await session.execute(
        update(Declaration)
        .where(Declaration.id == declaration.id, Declaration.status == "sent")
        .values(status="opened", opened_at=datetime.now(UTC))
        .returning(Declaration.id)
        .execution_options(synchronize_session=False)
    )
    if opened.scalar_one_or_none() is not None:
        await session.refresh(declaration)
        actor = recipient(env, declaration)
        await chain.record(session, actor, Action.DECLARATION_OPENED, "declaration", declaration.id)
    firm = await session.get(Firm, declaration.firm_id)
    return declaration, firm.name if firm else ""


def response_hash(
    declaration: Declaration, answers: dict[str, Any], data: Submission, at: datetime
) -> bytes:
    """The receipt of a submission being made (``receipt_hash``)."""
    return receipt_hash(declaration, answers, data.attestation_accepted, data.signature_name, at)


def stored_response_hash(declaration: Declaration) -> bytes | None:
    """The SHA-256 a submitted declaration's stored response hashes to now (None before it is
    submitted): equal to its recorded ``response_sha256`` unless the row was altered."""
    if declaration.submitted_at is None or declaration.answers is None:
        return None
    return receipt_hash(
        declaration,
        declaration.answers,
        bool(declaration.attestation_accepted),
        declaration.signature_name or "",
        declaration.submitted_at,
    )


def receipt_covers_form(declaration: Declaration) -> bool:
    """Whether a submitted declaration's receipt covers the form it answered as well as its
    response: false for a receipt given before receipts covered the form (or one that no longer
    matches at all, which ``response_matches`` refuses)."""
    recorded = declaration.response_sha256
    return recorded is not None and stored_response_hash(declaration) == recorded


def response_matches(declaration: Declaration) -> bool:
    """Whether a submitted declaration's stored response, with the form it answered, still
    hashes to its recorded ``response_sha256``. A receipt given before receipts covered the
    form (see docs/audit.md) matches its response alone; no row's hash can match both ways, so
    this lets no altered form through on a row that was hashed with it."""
    recorded = declaration.response_sha256
    if recorded is None or declaration.submitted_at is None or declaration.answers is None:
        return False
    if receipt_covers_form(declaration):
        return True
    legacy = receipt_hash(
        declaration,
        declaration.answers,
        bool(declaration.attestation_accepted),
        declaration.signature_name or "",
        declaration.submitted_at,
        form=False,
    )
    return legacy == recorded


def form_hash(snapshot: dict[str, Any]) -> str:
    """The hex SHA-256 of a declaration's pinned form (the template version it was sent with,
    the whole stored snapshot: its questions and attestation among the rest) as canonical
    JSON."""
    return hashlib.sha256(canonical.encode(snapshot)).hexdigest()


def recipient_sha256(name: str, email: str, ip: str | None) -> str:
    """SHA-256 (hex) of whom a submission names as its recipient and where it came from, as its
    ``declaration.submitted`` entry records it: the receipt covers what was declared, and a
    pack prints these beside it. A digest, not the values: the trail is kept for ever."""
    named = {"recipient_name": name, "recipient_email": email, "submitted_ip": ip}
    return hashlib.sha256(canonical.encode(named)).hexdigest()


def receipt_hash(
    declaration: Declaration,
    answers: dict[str, Any],
    attestation_accepted: bool,
    signature_name: str,
    at: datetime,
    *,
    form: bool = True,
) -> bytes:
    """The receipt: SHA-256 of the canonical JSON of what was declared, by whom, against which
    form (docs/audit.md); ``form=False`` for receipts given before they covered the form."""
    body = {
        "declaration_id": str(declaration.id),
        "firm_id": str(declaration.firm_id),
        "template_id": str(declaration.template_id),
        "template_version": declaration.template_version,
        "answers": answers,
        "attestation_accepted": attestation_accepted,
        "signature_name": signature_name,
        "submitted_at": canonical.timestamp(at),
    }
    if form:
        # What was asked, word for word: an answer means nothing beside a reworded question.
        body["form_sha256"] = form_hash(declaration.template_snapshot)
    return hashlib.sha256(canonical.encode(body)).digest()


async def _first_attempt(
    session: AsyncSession, actor: Actor, data: Submission, declaration: Declaration
) -> bool:
    """Whether this submission, by its idempotency key and input, is one that already
    committed (``declaration`` is then refreshed to it). No lock is taken: a concurrent first
    attempt holds the row, and the conditional update waits for it, then asks again."""
    first = await idempotency.first_result(session, actor, data.idempotency_key, _SUBMIT, data)
    if first is None:
        return False
    await session.refresh(declaration)
    return _holds(declaration, first)


def _holds(declaration: Declaration, first: dict[str, Any]) -> bool:
    """Whether the declaration still holds the receipt its first submission was given; if not,
    vouch for neither (and say so)."""
    receipt = declaration.response_sha256
    if receipt is None or first.get("response_sha256") != receipt.hex():
        log.error("declaration %s no longer holds its first receipt", declaration.id)
        return False
    return True


async def submission_receipt(
    session: AsyncSession, env: AuthEnv, token: str, key: str
) -> Declaration:
    """The submitted declaration, for the idempotency key its submission was sent with: a
    recipient whose answer to that submission was lost, and who has since reloaded the page
    (the form is refused once submitted), learns that it arrived and gets its receipt. Any
    other key gets NOT_FOUND, whatever the declaration's state: the link alone must not tell
    whether, or when, it was used without that being recorded (the form's refusals are).
    Writes nothing, but for a link replaced or withdrawn: that attempt is recorded, as the
    form records it."""
    declaration, _ = await _found(session, env, token)
    first = await idempotency.kept_result(session, recipient(env, declaration), key, _SUBMIT)
    if first is None or not _holds(declaration, first):
        raise NotFound("Nothing was submitted with this key.")
    return declaration


def _valid_submission(declaration: Declaration, data: Submission) -> dict[str, Any]:
    """The normalised answers, or BAD_USER_INPUT naming every problem of the submission at
    once (answers, statement, signature), so that one round of corrections is enough."""
    problems: list[dict[str, str]] = []
    answers: dict[str, Any] = {}
    try:
        answers = validate_answers(spec_from_snapshot(declaration.template_snapshot), data.answers)
    except BadUserInput as invalid:
        problems += invalid.extensions["fields"]
    if not data.attestation_accepted:
        problems.append(
            {"field": "attestationAccepted", "message": "Accept the statement to submit."}
        )
    if not shows_anything(data.signature_name):  # nor one of only zero-width spaces
        problems.append({"field": "signatureName", "message": "Sign with your full name."})
    if problems:
        raise BadUserInput(fields=problems)
    return answers


async def submit_declaration(
    session: AsyncSession, env: AuthEnv, token: str, data: Submission
) -> Declaration:
    """Validate the answers against the pinned version, then consume the token and store the
    response in one conditional UPDATE. Invalid answers fail the whole transaction: the token
    stays usable. A retry sending the first attempt's ``idempotency_key`` with the same input
    gets the first attempt's response back, rather than TOKEN_USED, and writes nothing; any
    other attempt on a used link is refused as before."""
    declaration, token_hash = await _found(session, env, token)
    actor = recipient(env, declaration)
    # Before the refusal: the first attempt may have committed with its answer lost on the way.
    if await _first_attempt(session, actor, data, declaration):
        return declaration
    await _refuse_if_closed(env, declaration)
    answers = _valid_submission(declaration, data)
    now = datetime.now(UTC)
    digest = response_hash(declaration, answers, data, now)
    won = await session.execute(
        update(Declaration)
        .where(
            Declaration.id == declaration.id,
            Declaration.token_hash == token_hash,
            Declaration.status.in_(("sent", "opened")),
            Declaration.token_expires_at > now,
        )
        .values(
            status="submitted",
            submitted_at=now,
            answers=answers,
            attestation_accepted=True,
            signature_name=data.signature_name,
            submitted_ip=env.ip,
            submitted_user_agent=(env.user_agent or "")[:512] or None,
            response_sha256=digest,
        )
        .returning(Declaration.id)
        .execution_options(synchronize_session=False)
    )
    if won.scalar_one_or_none() is None:
        # Changed since it was read: submitted by a concurrent request (this one's own first
        # attempt, whose commit the update waited for, is answered with its receipt), or its
        # link revoked, reissued or expired meanwhile. Say which (as a later attempt would).
        if await _first_attempt(session, actor, data, declaration):
            return declaration
        await session.refresh(declaration)
        if declaration.token_hash != token_hash:  # replaced or withdrawn: told which
            raise await _retired(session, env, token_hash)
        raise await _audited(_lost(declaration), env, declaration.firm_id, declaration.id)
    named = recipient_sha256(declaration.recipient_name, declaration.recipient_email, env.ip)
    details = {
        "response_sha256": digest.hex(),
        "template_version": declaration.template_version,
        "recipient_sha256": named,
    }
    await chain.record(
        session, actor, Action.DECLARATION_SUBMITTED, "declaration", declaration.id, details
    )
    kept = {"response_sha256": digest.hex()}
    await idempotency.remember(session, actor, data.idempotency_key, _SUBMIT, data, kept)
    await session.refresh(declaration)
    await _confirm(session, env, declaration, digest, now)
    return declaration


async def _confirm(
    session: AsyncSession, env: AuthEnv, declaration: Declaration, digest: bytes, at: datetime
) -> None:
    """Email the recipient what was received, in this transaction: it leaves only if the
    submission commits, and a retry answered with the first receipt sends nothing more."""
    firm = await session.get(Firm, declaration.firm_id)
    name = declaration.template_snapshot["name"]
    mail = mails.received(firm.name if firm else "Your firm", name, at, digest.hex())
    try:
        await env.send(session, declaration.recipient_email, mail.subject, mail.text, mail.html)
    except AddressUnmailable:
        # An address stored before the rules that refuse it now: the submission stands
        # without its receipt, rather than be refused for what the recipient cannot change.
        log.warning("declaration %s submitted; its receipt cannot be mailed", declaration.id)
