"""``createDeclaration`` on a plain asyncpg connection, for the write lane (app/http/lane.py).

The same checks, the same row (``service.draft``) and the same chained audit entry as
``service.create_declaration``, sent as statements compiled from the same table definitions,
inside a transaction already bound to the actor's firm, so RLS decides what it may see and
write exactly as on the normal path. Idempotency keys stay with the normal path.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import asyncpg
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.db.models import Counterparty, Declaration
from app.declarations import forms, service
from app.declarations.schemas import DeclarationCreate
from app.declarations.template_service import lane_snapshot, lane_template
from app.errors import NotFound

_TABLE: Table = Declaration.__table__  # type: ignore[assignment]


@functools.cache
def _counterparty_statement() -> str:
    query = select(Counterparty.id).where(Counterparty.id == uuid.UUID(int=0))
    return str(query.compile(dialect=asyncpg_dialect()))  # type: ignore[no-untyped-call]


async def create_declaration(
    conn: asyncpg.Connection, actor: Actor, data: DeclarationCreate
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A draft, written with its audit entry (members): the draft as all its columns (None
    where a draft has no value), and the entry; ``data`` has no idempotency key. Raises as the
    service does, before anything is written."""
    actor.require(Role.MEMBER)
    assert data.idempotency_key is None
    service.check_due(data)
    if data.counterparty_id is not None and (
        await conn.fetchval(_counterparty_statement(), data.counterparty_id) is None
    ):
        raise NotFound("Counterparty not found.")
    template = await lane_template(conn, data.template_id)
    row = service.draft(actor, template, data)
    # Before the firm's chain lock: see app/declarations/forms.py.
    await forms.insert_declaration(conn, row, lane_snapshot(template))
    entry = await chain.record_on(
        conn,
        actor,
        Action.DECLARATION_CREATED,
        "declaration",
        row["id"],
        service.created_details(template),
    )
    return {**dict.fromkeys(_TABLE.c.keys()), **row}, entry
