"""Gather everything a pack shows, in one read-only snapshot of the firm (the caller's).

Scope: ``declarationIds`` names exactly the declarations to include; without it, a declaration
is in scope when it was created or submitted within the period (and, with ``counterpartyIds``,
belongs to one of those counterparties). Cover status is shown for the named counterparties,
or else for those the declarations in scope belong to. The audit appendix lists every entry
about those declarations and counterparties, whenever made (not the firm's other entries), the
result of verifying the whole chain now, and the latest signed checkpoint. RLS confines every
read to the actor's firm, so an id of another firm's row is simply "not found".
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import asyncpg
from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import calendar
from app.audit import chain, checkpoints
from app.audit.actions import Action
from app.audit.service import actor_names
from app.audit.signing import SigningKey
from app.audit.witness import Kept
from app.auth.actor import Actor, ActorType
from app.counterparties.cover import CoverState, CoverStatus
from app.counterparties.service import cover_confirmations, cover_statuses
from app.db.models import AuditEntry, Counterparty, Declaration, Firm, User
from app.declarations.public import receipt_covers_form, recipient_sha256, response_matches
from app.declarations.service import effective_status
from app.declarations.templates import TemplateSpec, spec_from_snapshot
from app.errors import field_error
from app.evidence import render
from app.evidence.content import (
    CheckpointContent,
    CounterpartyContent,
    DeclarationContent,
    EntryContent,
    PackContent,
    VerificationContent,
    answers_of,
    moment,
    printed_size,
)
from app.evidence.render import RenderError
from app.evidence.schemas import PackCreate

MAX_DECLARATIONS = 1000
# Declarations are read whole (answers, pinned form) this many at a time, and counted as they
# are read: a pack past its content limit is refused with no more than this read beyond it.
BATCH = 20
# A pack's declarations bring their own entries (some five each), as well as the period's.
MAX_ENTRIES = 10_000


def period(data: PackCreate) -> tuple[datetime, datetime]:
    """The period as [start, end) instants: whole UTC days, both ends included."""
    start = datetime.combine(data.start, time.min, UTC)
    return start, datetime.combine(data.end + timedelta(days=1), time.min, UTC)


@dataclass(frozen=True)
class Scoped:
    """A declaration in scope, as much of it as choosing the rest of the pack needs: its answers
    and form are read later, a batch at a time (``_declarations``)."""

    id: uuid.UUID
    counterparty_id: uuid.UUID | None
    status: str


async def scoped_declarations(session: AsyncSession, data: PackCreate) -> list[Scoped]:
    """The declarations in scope, oldest first; refuses ids it cannot see and oversized packs."""
    query = select(Declaration.id, Declaration.counterparty_id, Declaration.status).order_by(
        Declaration.created_at, Declaration.id
    )
    if data.declaration_ids is not None:
        query = query.where(Declaration.id.in_(data.declaration_ids))
    else:
        start, end = period(data)
        query = query.where(
            or_(
                and_(Declaration.created_at >= start, Declaration.created_at < end),
                and_(Declaration.submitted_at >= start, Declaration.submitted_at < end),
            )
        )
        if data.counterparty_ids is not None:
            query = query.where(Declaration.counterparty_id.in_(data.counterparty_ids))
    rows = [Scoped(*row) for row in await session.execute(query.limit(MAX_DECLARATIONS + 1))]
    if data.declaration_ids is not None and len(rows) != len(data.declaration_ids):
        missing = len(data.declaration_ids) - len(rows)
        raise field_error("declarationIds", f"{missing} of these declarations were not found.")
    if len(rows) > MAX_DECLARATIONS:
        raise field_error(
            "from", f"More than {MAX_DECLARATIONS} declarations are in scope; narrow the period."
        )
    return rows


async def scoped_counterparties(
    session: AsyncSession, data: PackCreate, declarations: list[Scoped]
) -> list[Counterparty]:
    ids = data.counterparty_ids
    if ids is None:
        ids = list(dict.fromkeys(d.counterparty_id for d in declarations if d.counterparty_id))
    if not ids:
        return []
    query = select(Counterparty).where(Counterparty.id.in_(ids))
    rows = list((await session.execute(query.order_by(func.lower(Counterparty.name)))).scalars())
    if data.counterparty_ids is not None and len(rows) != len(data.counterparty_ids):
        missing = len(data.counterparty_ids) - len(rows)
        raise field_error("counterpartyIds", f"{missing} of these counterparties were not found.")
    return rows


def _spec(snapshot: dict[str, object]) -> TemplateSpec | None:
    try:
        return spec_from_snapshot(dict(snapshot))
    except ValidationError:
        return None  # an unreadable snapshot still shows every stored answer, unlabelled


class _Receipts:
    """The SHA-256 (hex) each submission's ``declaration.submitted`` entry recorded (the
    receipt its recipient was given), taken only from entries the chain's verification has
    just checked, and only if the whole chain verifies: whoever rewrote a response, its hash
    and that entry breaks the chain there, or (re-chained) at the next signed checkpoint."""

    def __init__(self, declarations: Iterable[Scoped | Declaration]) -> None:
        self.wanted = {str(d.id) for d in declarations if d.status == "submitted"}
        # Each entry's response_sha256, and its recipient_sha256 (None before entries had it).
        self.found: dict[str, list[tuple[str | None, str | None]]] = {}
        self.broken: str | None = None  # where the chain's verification failed

    def __call__(self, row: asyncpg.Record) -> None:
        target = row["target_id"]
        if (
            row["action"] == Action.DECLARATION_SUBMITTED.value
            and target in self.wanted
            and (row["target_type"], row["actor_type"], row["actor_id"])
            == ("declaration", ActorType.RECIPIENT.value, target)
        ):
            details = json.loads(row["details"])  # exactly, as verification reads it
            if not isinstance(details, dict):
                details = {}
            recorded = (details.get("response_sha256"), details.get("recipient_sha256"))
            self.found.setdefault(target, []).append(recorded)

    def check(self, d: Declaration) -> None:
        """Refuse a submitted response that is not what was recorded when it was submitted:
        a pack must not present it as its recipient's."""
        if not response_matches(d):
            raise RenderError(f"Declaration {d.id}'s stored response does not match its SHA-256.")
        if self.broken is not None:
            raise RenderError(
                f"Declaration {d.id} cannot be shown: the audit trail does not verify "
                f"(at {self.broken})."
            )
        entries = self.found.get(str(d.id), [])
        if not entries:
            raise RenderError(
                f"Declaration {d.id} has no verified declaration.submitted audit entry."
            )
        if len(entries) > 1:
            raise RenderError(
                f"Declaration {d.id} has {len(entries)} declaration.submitted audit entries."
            )
        recorded = d.response_sha256
        assert recorded is not None  # a response that matches has one
        digest, named = entries[0]
        if digest != recorded.hex():
            raise RenderError(
                f"Declaration {d.id}'s SHA-256 does not match its declaration.submitted audit "
                "entry."
            )
        # Entries made before they named the recipient vouch for the response alone.
        if named is not None and named != recipient_sha256(
            d.recipient_name, d.recipient_email, d.submitted_ip
        ):
            raise RenderError(
                f"Declaration {d.id}'s recipient is not the one its declaration.submitted audit "
                "entry recorded."
            )


def _declaration(
    d: Declaration, names: dict[uuid.UUID, str], receipts: _Receipts
) -> DeclarationContent:
    if d.status == "submitted":
        receipts.check(d)
    spec = _spec(d.template_snapshot)
    return DeclarationContent(
        id=str(d.id),
        recipient_name=d.recipient_name,
        recipient_email=d.recipient_email,
        template_name=str(d.template_snapshot.get("name", "")),
        template_version=d.template_version,
        status=effective_status(d),
        counterparty=names.get(d.counterparty_id) if d.counterparty_id else None,
        created_at=moment(d.created_at) or "",
        sent_at=moment(d.sent_at),
        submitted_at=moment(d.submitted_at),
        answers=answers_of(spec, d.answers) if d.status == "submitted" else [],
        attestation=spec.attestation if spec else None,
        attestation_accepted=d.attestation_accepted,
        signature_name=d.signature_name,
        submitted_ip=d.submitted_ip,
        response_sha256=d.response_sha256.hex() if d.response_sha256 else None,
        receipt_covers_form=d.status != "submitted" or receipt_covers_form(d),
    )


async def _generated_by(session: AsyncSession, actor: Actor) -> str:
    if actor.type is ActorType.USER:
        email = await session.scalar(select(User.email).where(User.id == actor.id))
        if email:
            return str(email)
    return f"{actor.type.value} {actor.id}"


async def _declarations(
    session: AsyncSession,
    scoped: list[Scoped],
    names: dict[uuid.UUID, str],
    receipts: _Receipts,
) -> list[DeclarationContent]:
    """The declarations' content, in scope order, read BATCH at a time and counted as read:
    once what they print passes the pack's content limit, the pack is refused (``TooLarge``)
    before the rest are read. Read at once, a refused pack took memory in proportion to its
    scope (1,000 declarations of 80 kB answers), not to the limit."""
    contents: list[DeclarationContent] = []
    size = 0
    async for d in _read(session, [s.id for s in scoped]):
        content = _declaration(d, names, receipts)
        size += printed_size(content)
        if size > render.MAX_DOCUMENT_BYTES:
            raise render.TooLarge(size)
        contents.append(content)
    return contents


async def _read(session: AsyncSession, ids: list[uuid.UUID]) -> AsyncIterator[Declaration]:
    """The declarations ``ids`` names, whole, read BATCH at a time (each in order of creation,
    so ids scoped oldest first come oldest first): each batch is let go before the next."""
    for start in range(0, len(ids), BATCH):
        query = (
            select(Declaration)
            .where(Declaration.id.in_(ids[start : start + BATCH]))
            .order_by(Declaration.created_at, Declaration.id)
        )
        for d in (await session.execute(query)).scalars():
            yield d


async def _check_confirmations(
    session: AsyncSession, ids: list[uuid.UUID], receipts: _Receipts
) -> None:
    """Check the cover confirmations against their receipts, read BATCH at a time: none is
    printed, but a counterparty's were read whole at once, thousands of them, whatever the
    pack's limit (found by a second review of the pack's content limit)."""
    async for confirmation in _read(session, ids):
        receipts.check(confirmation)


async def _entries(
    session: AsyncSession,
    actor: Actor,
    declarations: list[Scoped],
    counterparties: list[Counterparty],
) -> list[EntryContent]:
    """Every entry about a declaration or a counterparty in the pack, whenever it was made (one
    named by id may lie outside the period, and one in scope may have been sent before it).
    Not the firm's other entries of the period: its trail is its admins' to read (members make
    packs and viewers download them), and what a pack proves is what befell what it holds."""
    declared = [str(d.id) for d in declarations]
    covered = [str(c.id) for c in counterparties]
    query = (
        select(AuditEntry)
        .where(
            AuditEntry.firm_id == actor.firm_id,
            or_(
                and_(AuditEntry.target_type == "declaration", AuditEntry.target_id.in_(declared)),
                and_(AuditEntry.target_type == "counterparty", AuditEntry.target_id.in_(covered)),
            ),
        )
        .order_by(AuditEntry.seq)
        .limit(MAX_ENTRIES + 1)
    )
    rows = list((await session.execute(query)).scalars())
    if len(rows) > MAX_ENTRIES:
        raise field_error(
            "from",
            f"More than {MAX_ENTRIES} audit entries are in scope; narrow the period or name "
            "fewer declarations.",
        )
    names = await actor_names(session, actor, rows)
    return [
        EntryContent(
            seq=row.seq,
            occurred_at=moment(row.occurred_at) or "",
            action=row.action,
            actor=names.get((row.actor_type, row.actor_id or ""))
            or f"{row.actor_type} {row.actor_id or ''}".strip(),
            target=f"{row.target_type or ''} {row.target_id or ''}".strip(),
            hash=row.hash.hex(),
        )
        for row in rows
    ]


async def _checkpoint(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey
) -> CheckpointContent | None:
    cp = await checkpoints.newest(session, firm_id, key)
    if cp is None:
        return None
    return CheckpointContent(
        seq=cp.seq,
        head_hash=cp.head_hash.hex(),
        signed_at=moment(cp.signed_at) or "",
        key_id=cp.key_id,
        signature=base64.b64encode(cp.signature).decode(),
    )


async def _cover(
    session: AsyncSession, actor: Actor, counterparties: list[Counterparty], window_days: int
) -> list[CounterpartyContent]:
    today = calendar.today()
    statuses = await cover_statuses(
        session, actor, [c.id for c in counterparties], today, window_days
    )
    lines = []
    for c in counterparties:
        status = statuses[c.id]
        until = status.until.isoformat() if status.until else None
        kind = c.kind.replace("_", " ")
        lines.append(CounterpartyContent(c.name, kind, c.frn, _cover_words(status), until))
    return lines


def _cover_words(status: CoverStatus) -> str:
    """The state as the pack prints it, with what qualifies it."""
    words = status.state.value.replace("_", " ")
    if status.starts_on is not None:
        renewal = "" if status.state is CoverState.not_yet_in_force else "renewal "
        words += f" ({renewal}starts {status.starts_on.isoformat()})"
    if status.covers_all_activities is False:
        words += "; not all activities covered"
    return words


def _verification(verified: chain.Verification) -> VerificationContent:
    return VerificationContent(
        ok=verified.ok,
        entries_checked=verified.entries_checked,
        head_seq=verified.head_seq,
        head_hash=verified.head_hash.hex(),
        checkpoints_checked=verified.checkpoints_checked,
        failure=None if verified.ok else f"seq {verified.failure_seq}: {verified.failure_reason}",
    )


async def _counterparty_names(
    session: AsyncSession, declarations: list[Scoped], counterparties: list[Counterparty]
) -> dict[uuid.UUID, str]:
    names = {c.id: c.name for c in counterparties}
    missing = {d.counterparty_id for d in declarations if d.counterparty_id} - names.keys()
    if missing:
        query = select(Counterparty.id, Counterparty.name).where(Counterparty.id.in_(missing))
        names.update({row[0]: row[1] for row in await session.execute(query)})
    return names


async def collect(
    session: AsyncSession,
    actor: Actor,
    pack_id: uuid.UUID,
    data: PackCreate,
    key: SigningKey,
    cover_window_days: int,
    written: Kept | None = None,
) -> PackContent:
    """Everything the pack shows, as the snapshot ``session`` sees the firm: the verified
    chain head printed in the pack is the firm's last entry committed before it (the pack's
    own ``requested`` entry comes after); the chain held to ``written``, what the app's
    witness kept of it before the snapshot began."""
    declarations = await scoped_declarations(session, data)
    counterparties = await scoped_counterparties(session, data, declarations)
    names = await _counterparty_names(session, declarations, counterparties)
    firm = await session.get(Firm, actor.firm_id)
    # The cover printed is read from these, in the pack or not: each is checked as the pack's
    # own responses are, or a rewritten policy end would be printed under the pack's signature.
    confirmations = await cover_confirmations(session, [c.id for c in counterparties])
    receipts = _Receipts([*declarations, *(Scoped(i, None, "submitted") for i in confirmations)])
    verified = await chain.verify(
        session, actor.firm_id, key.trusted, seen=receipts, revoked=key.revoked, written=written
    )
    if not verified.ok:
        # A rewrite re-chained up to a later checkpoint passes every check until that one:
        # no entry of a chain that fails vouches for a response.
        receipts.broken = f"seq {verified.failure_seq}"
    await _check_confirmations(session, confirmations, receipts)
    return PackContent(
        pack_id=str(pack_id),
        title=data.title,
        firm_name=firm.name if firm else "",
        firm_frn=firm.frn if firm else None,
        period_from=data.start,
        period_to=data.end,
        declaration_filter=len(data.declaration_ids) if data.declaration_ids else None,
        counterparty_filter=len(data.counterparty_ids) if data.counterparty_ids else None,
        generated_by=await _generated_by(session, actor),
        generated_at=moment(datetime.now(UTC)) or "",
        signing_key_id=key.key_id,
        declarations=await _declarations(session, declarations, names, receipts),
        counterparties=await _cover(session, actor, counterparties, cover_window_days),
        entries=await _entries(session, actor, declarations, counterparties),
        verification=_verification(verified),
        checkpoint=await _checkpoint(session, actor.firm_id, key),
    )
