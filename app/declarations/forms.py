"""A declaration's form: the template version it was sent with, kept once per firm (0036).

A form is keyed by the SHA-256 of its canonical bytes, which is also the receipt's
``form_sha256``; a declaration names it by that hash. Adding a form the firm already has
writes nothing, so a bulk create of 500 stores one form, not 500 copies.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Table, bindparam, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import canonical
from app.db.models import Declaration, DeclarationForm

_TABLE: Table = Declaration.__table__  # type: ignore[assignment]


def digest(snapshot: Mapping[str, Any]) -> bytes:
    """The form's key: SHA-256 of its canonical bytes (sorted keys, no whitespace, UTF-8)."""
    return hashlib.sha256(canonical.encode(dict(snapshot))).digest()


def _add() -> Any:
    return pg_insert(DeclarationForm).on_conflict_do_nothing(
        index_elements=[DeclarationForm.firm_id, DeclarationForm.sha256]
    )


async def keep(session: AsyncSession, firm_id: uuid.UUID, snapshot: Mapping[str, Any]) -> bytes:
    """Add the form to the firm's, unless it has it already; its key."""
    sha256 = digest(snapshot)
    values = {"firm_id": firm_id, "sha256": sha256, "snapshot": dict(snapshot)}
    await session.execute(_add().values(values))
    return sha256


@functools.cache
def _insert_with_form(columns: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """A declaration's INSERT of these columns with its form's, in one statement (one round
    trip): the form as a data-modifying CTE, its firm and hash the declaration's own
    parameters. The foreign key is checked at the statement's end, when the form is there."""
    form = _add().values(
        firm_id=bindparam("firm_id"),
        sha256=bindparam("form_sha256"),
        snapshot=bindparam("form_snapshot"),
    )
    statement = (
        insert(_TABLE).values({name: bindparam(name) for name in columns}).add_cte(form.cte("form"))
    )
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    return compiled.string, tuple(compiled.positiontup or ())


async def insert_declaration(
    conn: asyncpg.Connection, row: Mapping[str, Any], snapshot: Mapping[str, Any] | orjson.Fragment
) -> None:
    """Insert a draft (``row``: its columns, none of them JSON, ``form_sha256`` among them) on
    a plain asyncpg connection (the write lane's), adding its form (``snapshot``, or its JSON
    as a fragment) unless the firm has it already."""
    sql, order = _insert_with_form(tuple(row))
    values = {**row, "form_snapshot": orjson.dumps(snapshot).decode()}
    await conn.execute(sql, *(values[name] for name in order))
