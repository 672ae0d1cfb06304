"""Declarations, firm side: create (one or many), send, remind, reissue, revoke, read, list.

Viewers read; members create, send, remind and revoke. Every change is a chained audit entry
in the same transaction.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import case, func, select, tuple_
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app import calendar, idempotency, pagination
from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.auth.env import AuthEnv
from app.db.models import Counterparty, Declaration, Firm
from app.declarations import forms, links, mails
from app.declarations.schemas import BulkDeclarationCreate, DeclarationCreate, DeclarationFilter
from app.declarations.template_service import Template, get_template
from app.errors import BadUserInput, NotFound, field_error
from app.ratelimit import Policy
from app.ratelimit.mailbox import mailbox

LIVE = ("sent", "opened")
STATUSES = ("draft", "sent", "opened", "submitted", "expired", "revoked")


async def get_declaration(
    session: AsyncSession, actor: Actor, declaration_id: uuid.UUID
) -> Declaration:
    """One of the firm's declarations (RLS hides every other firm's)."""
    declaration = await session.get(Declaration, declaration_id)
    if declaration is None:
        raise NotFound("Declaration not found.")
    return declaration


async def create_declaration(
    session: AsyncSession, actor: Actor, data: DeclarationCreate
) -> Declaration:
    """A draft pinned to the template's current version (members). A retry with the same
    idempotency key returns the first draft and writes nothing."""
    actor.require(Role.MEMBER)
    form = await _form_first(session, actor, data.idempotency_key, data.template_id)
    first = await idempotency.replay(
        session, actor, data.idempotency_key, "createDeclaration", data
    )
    if first is not None:
        return await get_declaration(session, actor, uuid.UUID(first["id"]))
    declaration = await _create(session, actor, data, form)
    result = {"id": str(declaration.id)}
    await idempotency.remember(
        session, actor, data.idempotency_key, "createDeclaration", data, result
    )
    return declaration


def check_due(data: DeclarationCreate) -> None:
    if data.due_date is not None and data.due_date < calendar.today():
        raise field_error("dueDate", "The due date has passed.")


def draft(actor: Actor, template: Template, data: DeclarationCreate) -> dict[str, Any]:
    """The column values of a new draft, pinned to the template's version, but its form's key
    (``app.declarations.forms`` keeps the form)."""
    return {
        "id": uuid.uuid4(),
        "firm_id": actor.firm_id,
        "template_id": template.id,
        "template_version": template.version,
        "recipient_name": data.recipient_name,
        "recipient_email": data.recipient_email,
        "counterparty_id": data.counterparty_id,
        "due_date": data.due_date,
        "link_days": data.link_days,
        "status": "draft",
        "created_by": actor.id,
        "created_at": datetime.now(UTC),
        "reminder_count": 0,
    }


def created_details(template: Template) -> dict[str, Any]:
    """The details of a draft's ``declaration.created`` audit entry."""
    return {"template_id": str(template.id), "version": template.version}


async def _create(
    session: AsyncSession,
    actor: Actor,
    data: DeclarationCreate,
    form: tuple[Template, dict[str, Any], bytes] | None = None,
) -> Declaration:
    """A draft and its audit entry; ``form``: its template, snapshot and form's key, when the
    caller has them already (``_form``: a bulk create, or a create with an idempotency key)."""
    check_due(data)
    if (
        data.counterparty_id is not None
        and await session.get(Counterparty, data.counterparty_id) is None
    ):
        raise NotFound("Counterparty not found.")
    template, snapshot, form_key = form or await _form(session, actor, data.template_id)
    declaration = Declaration(**draft(actor, template, data), form_key=form_key)
    session.add(declaration)
    await session.flush()
    # As stored: the form never changes once written (0036), so it is not read back.
    set_committed_value(declaration, "template_snapshot", snapshot)
    await chain.record(
        session,
        actor,
        Action.DECLARATION_CREATED,
        "declaration",
        declaration.id,
        created_details(template),
    )
    return declaration


async def _form(
    session: AsyncSession, actor: Actor, template_id: uuid.UUID
) -> tuple[Template, dict[str, Any], bytes]:
    """The template's latest version, its snapshot, and its form's key, the form kept."""
    template = await get_template(session, actor, template_id)
    snapshot = template.snapshot()
    return template, snapshot, await forms.keep(session, actor.firm_id, snapshot)


async def _form_first(
    session: AsyncSession, actor: Actor, key: str | None, template_id: uuid.UUID
) -> tuple[Template, dict[str, Any], bytes] | None:
    """``_form``, before a create with an idempotency key takes the firm's chain lock to look
    for its first result (see app/declarations/forms.py); None without a key (the create adds
    its form in turn), or with no such template (its first result may still answer; a create
    is refused)."""
    if key is None:
        return None
    try:
        return await _form(session, actor, template_id)
    except NotFound:
        return None


def _recipient_key(firm_id: uuid.UUID, email: str) -> str:
    return f"{firm_id} {mailbox(email)}"


async def _count_mails(env: AuthEnv, firm_id: uuid.UUID, emails: list[str]) -> None:
    """Count declaration mails to ``emails`` against the firm's limit and each recipient's:
    all of them, or (refused) none, unless two requests race for the last of a recipient's."""
    recipients = Counter(_recipient_key(firm_id, email) for email in emails)
    for key, cost in recipients.items():
        await env.limiter.check_room(Policy.DECLARATION_MAILS_PER_RECIPIENT, key, cost)
    await env.limiter.hit(Policy.DECLARATION_MAILS_PER_FIRM, str(firm_id), len(emails))
    for key, cost in recipients.items():
        await env.limiter.hit(Policy.DECLARATION_MAILS_PER_RECIPIENT, key, cost)


async def _issue_link(
    session: AsyncSession,
    env: AuthEnv,
    declaration: Declaration,
    reminder: bool,
    *,
    counted: bool = False,
) -> None:
    """A new single-use link (the previous one dies), lasting the declaration's link days, and
    the email that carries it (``counted``: a bulk send counted it already)."""
    now = datetime.now(UTC)
    expires = links.expiry(env.settings, declaration.due_date, declaration.link_days, now)
    if expires <= now:
        raise field_error("dueDate", "The due date and its grace period have passed.")
    if not counted:
        await _count_mails(env, declaration.firm_id, [declaration.recipient_email])
    token, token_hash = links.new_token(env.secret_key)
    declaration.token_hash, declaration.token_expires_at = token_hash, expires
    firm = await session.get(Firm, declaration.firm_id)
    compose = mails.reminder if reminder else mails.request
    mail = compose(
        links.url(env.settings, token),
        firm.name if firm else "Your firm",
        declaration.template_snapshot["name"],
        declaration.due_date,
    )
    await env.send(session, declaration.recipient_email, mail.subject, mail.text, mail.html)


async def send_declaration(
    session: AsyncSession, actor: Actor, env: AuthEnv, declaration_id: uuid.UUID
) -> Declaration:
    """Email the recipient their link; a draft becomes sent (members)."""
    actor.require(Role.MEMBER)
    return await _send(session, actor, env, declaration_id, counted=False)


async def _send(
    session: AsyncSession,
    actor: Actor,
    env: AuthEnv,
    declaration_id: uuid.UUID,
    *,
    counted: bool,
) -> Declaration:
    declaration = await _locked(session, declaration_id)
    if declaration.status != "draft":
        raise BadUserInput("Only a draft can be sent; remind or reissue the link instead.")
    await _issue_link(session, env, declaration, reminder=False, counted=counted)
    declaration.status, declaration.sent_at = "sent", datetime.now(UTC)
    await session.flush()
    details = {
        "expires_at": declaration.token_expires_at.isoformat()
        if declaration.token_expires_at
        else None
    }
    await chain.record(
        session, actor, Action.DECLARATION_SENT, "declaration", declaration.id, details
    )
    return declaration


async def remind_declaration(
    session: AsyncSession, actor: Actor, env: AuthEnv, declaration_id: uuid.UUID
) -> Declaration:
    """Email a reminder with a fresh link (only hashes are stored, so the old link cannot be
    sent again; it stops working)."""
    actor.require(Role.MEMBER)
    declaration = await _live(session, declaration_id)
    await _issue_link(session, env, declaration, reminder=True)
    declaration.last_reminded_at = datetime.now(UTC)
    declaration.reminder_count += 1
    await session.flush()
    details = {"reminders": declaration.reminder_count}
    await chain.record(
        session, actor, Action.DECLARATION_REMINDED, "declaration", declaration.id, details
    )
    return declaration


async def reissue_declaration_link(
    session: AsyncSession, actor: Actor, env: AuthEnv, declaration_id: uuid.UUID
) -> Declaration:
    """Replace the recipient's link; the old token dies at once (members)."""
    actor.require(Role.MEMBER)
    declaration = await _live(session, declaration_id)
    await _issue_link(session, env, declaration, reminder=False)
    await session.flush()
    await chain.record(
        session, actor, Action.DECLARATION_LINK_REISSUED, "declaration", declaration.id
    )
    return declaration


async def revoke_declaration(
    session: AsyncSession, actor: Actor, declaration_id: uuid.UUID
) -> Declaration:
    """Withdraw an unsubmitted declaration; its link stops working (members)."""
    actor.require(Role.MEMBER)
    declaration = await _locked(session, declaration_id)
    if declaration.status not in ("draft", *LIVE):
        raise BadUserInput(f"A {declaration.status} declaration cannot be revoked.")
    declaration.status, declaration.revoked_at = "revoked", datetime.now(UTC)
    declaration.token_hash = None
    await session.flush()
    await chain.record(session, actor, Action.DECLARATION_REVOKED, "declaration", declaration.id)
    return declaration


async def bulk_create_declarations(
    session: AsyncSession, actor: Actor, env: AuthEnv, data: BulkDeclarationCreate
) -> list[Declaration]:
    """Create (and by default send) one declaration per recipient: all or nothing, since any
    failure fails the request's one transaction. A retry with the same idempotency key returns
    the first batch and writes nothing."""
    actor.require(Role.MEMBER)
    form = await _form_first(session, actor, data.idempotency_key, data.template_id)
    first = await idempotency.replay(
        session, actor, data.idempotency_key, "bulkCreateDeclarations", data
    )
    if first is not None:
        return [await get_declaration(session, actor, uuid.UUID(i)) for i in first["ids"]]
    ones = [
        DeclarationCreate(
            template_id=data.template_id,
            recipient_name=recipient.name,
            recipient_email=recipient.email,
            due_date=data.due_date,
            link_days=data.link_days,
        )
        for recipient in data.recipients
    ]
    check_due(ones[0])  # they share it
    form = form or await _form(session, actor, data.template_id)  # once: the same for each
    if data.send:
        # Counted at once, once what would refuse every one was checked: a send past a limit
        # is refused before any of it counts, and one refused otherwise counts nothing.
        await _count_mails(env, actor.firm_id, [one.recipient_email for one in ones])
    created = []
    for one in ones:
        declaration = await _create(session, actor, one, form)
        if data.send:
            declaration = await _send(session, actor, env, declaration.id, counted=True)
        created.append(declaration)
    ids = {"ids": [str(d.id) for d in created]}
    await idempotency.remember(
        session, actor, data.idempotency_key, "bulkCreateDeclarations", data, ids
    )
    return created


async def _locked(session: AsyncSession, declaration_id: uuid.UUID) -> Declaration:
    # Read afresh: a copy this request loaded earlier may predate another's committed change.
    row = await session.execute(
        select(Declaration)
        .where(Declaration.id == declaration_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    declaration = row.scalar_one_or_none()
    if declaration is None:
        raise NotFound("Declaration not found.")
    return declaration


async def _live(session: AsyncSession, declaration_id: uuid.UUID) -> Declaration:
    declaration = await _locked(session, declaration_id)
    if declaration.status not in LIVE:
        raise BadUserInput(f"A {declaration.status} declaration has no link to renew.")
    return declaration


def effective_status(declaration: Declaration, now: datetime | None = None) -> str:
    """``expired`` is derived: a sent or opened declaration whose link has run out."""
    return status_at(declaration.status, declaration.token_expires_at, now or datetime.now(UTC))


def status_at(status: str, expires: datetime | None, now: datetime) -> str:
    if status in LIVE and expires is not None and expires <= now:
        return "expired"
    return status


async def counts(session: AsyncSession, actor: Actor) -> dict[str, int]:
    """How many of the firm's declarations are in each status (for the dashboard)."""
    status = _status_expression()
    rows = await session.execute(select(status, func.count()).group_by(status))
    found = dict.fromkeys(STATUSES, 0)
    found.update({str(name): int(count) for name, count in rows.all()})
    return found


def _status_expression() -> Any:
    return case(
        (
            Declaration.status.in_(LIVE) & (Declaration.token_expires_at <= func.now()),
            "expired",
        ),
        else_=Declaration.status,
    )


MAX_PAGE = 100


def encode_cursor(declaration: Declaration) -> str:
    return cursor_of(declaration.created_at, declaration.id)


def cursor_of(created_at: datetime, ident: uuid.UUID) -> str:
    return pagination.encode(created_at.isoformat(), ident)


def _page_query(query: Any, filters: DeclarationFilter, first: int, after: str | None) -> Any:
    """Newest first, filtered, one more than a page (to tell whether more follow)."""
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} declarations at a time.")
    query = query.order_by(Declaration.created_at.desc(), Declaration.id.desc())
    if filters.status is not None:
        query = query.where(_status_expression() == filters.status)
    if filters.template_id is not None:
        query = query.where(Declaration.template_id == filters.template_id)
    if filters.counterparty_id is not None:
        query = query.where(Declaration.counterparty_id == filters.counterparty_id)
    if filters.due_before is not None:
        query = query.where(Declaration.due_date < filters.due_before)
    if filters.search:
        pattern = pagination.like(filters.search)
        query = query.where(
            Declaration.recipient_name.ilike(pattern, escape="\\")
            | Declaration.recipient_email.ilike(pattern, escape="\\")
        )
    if after is not None:
        created, ident = pagination.decode_time(after)
        query = query.where(tuple_(Declaration.created_at, Declaration.id) < tuple_(created, ident))
    return query.limit(first + 1)


async def list_declarations(
    session: AsyncSession,
    actor: Actor,
    filters: DeclarationFilter,
    first: int,
    after: str | None,
) -> tuple[list[Declaration], bool]:
    """A page of the firm's declarations, newest first, and whether more follow."""
    query = _page_query(select(Declaration), filters, first, after)
    rows = list((await session.execute(query)).scalars())
    return rows[:first], len(rows) > first


async def page_rows(
    session: AsyncSession, actor: Actor, columns: list[str], first: int, after: str | None
) -> tuple[list[Any], bool]:
    """The same page as ``list_declarations`` with only the named columns (and those the
    cursor and status need), as plain rows: for the compiled fast path of persisted queries."""
    wanted = {*columns, "id", "created_at", "status", "token_expires_at"}
    table = Declaration.__table__.c
    query = _page_query(
        select(*(table[name] for name in sorted(wanted))), DeclarationFilter(), first, after
    )
    rows = list((await session.execute(query)).all())
    return rows[:first], len(rows) > first


# The type of each value ``_page_query`` binds says which of a page's arguments it is.
_KINDS = {datetime: "created", uuid.UUID: "id", int: "limit"}


@functools.cache
def page_statement(columns: tuple[str, ...], with_after: bool) -> tuple[str, tuple[str, ...]]:
    """The SQL ``page_rows`` sends, compiled once for asyncpg, and which argument each ``$n``
    takes: the fast path's lane runs exactly this query, never a hand-written copy."""
    wanted = {*columns, "id", "created_at", "status", "token_expires_at"}
    table = Declaration.__table__.c
    after = cursor_of(datetime(2000, 1, 1, tzinfo=UTC), uuid.UUID(int=0)) if with_after else None
    query = _page_query(
        select(*(table[name] for name in sorted(wanted))), DeclarationFilter(), 1, after
    )
    compiled = query.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    return compiled.string, tuple(_KINDS[type(compiled.params[n])] for n in compiled.positiontup)


async def lane_page_rows(
    conn: asyncpg.Connection, columns: tuple[str, ...], first: int, after: str | None
) -> tuple[list[asyncpg.Record], bool]:
    """``page_rows`` on a plain asyncpg connection whose transaction is already bound to the
    caller's firm (RLS decides which rows it sees, exactly as on the normal path)."""
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} declarations at a time.")
    sql, order = page_statement(columns, after is not None)
    values: dict[str, Any] = {"limit": first + 1}
    if after is not None:
        values["created"], values["id"] = pagination.decode_time(after)
    rows = await conn.fetch(sql, *(values[kind] for kind in order))
    return rows[:first], len(rows) > first
