"""A declaration's form: the template version it was sent with, kept once per firm (0036).

A form is keyed by the SHA-256 the database computes of it (``declaration_form_key``: of its
jsonb's text as UTF-8, whatever the session's encoding); a declaration names it by that key.
Adding a form the firm already has writes nothing, so a bulk create of 500 stores one form, not
500 copies. The key is the database's, never the app's to choose: a form kept first under
another's key would be what every later declaration of that one asked.

A create adds its form before it takes the firm's chain lock, as it inserts its draft (whose
key-share lock on the firm's row comes before the chain lock, as updateFirm takes them): a
first create of a form holding its key, uncommitted, while it waited for the lock, and another
holding the lock while it added the same form, waited on each other until PostgreSQL broke
the deadlock, a second later, the firm's writes stalled behind it. A create with an
idempotency key takes the lock to look for its first result, so it adds its form first. A
request that took the lock before (a mutation before its create, or a key's first use, which
is recorded) adds it under the lock: should that meet another's first create of the same form,
PostgreSQL breaks the deadlock after a second and the request is run again.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
from sqlalchemy import ColumnElement, Table, bindparam, cast, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Declaration, DeclarationForm

_TABLE: Table = Declaration.__table__  # type: ignore[assignment]


def _key(snapshot: Any) -> ColumnElement[bytes]:
    """The key the database gives ``snapshot`` (a JSONB expression), as 0036's column does."""
    return func.declaration_form_key(snapshot)


def _add(firm_id: Any, snapshot: Any) -> Any:
    return (
        pg_insert(DeclarationForm)
        .values(firm_id=firm_id, snapshot=snapshot)
        .on_conflict_do_nothing(index_elements=[DeclarationForm.firm_id, DeclarationForm.sha256])
    )


async def keep(session: AsyncSession, firm_id: uuid.UUID, snapshot: Mapping[str, Any]) -> bytes:
    """Add the form to the firm's, unless it has it already; its key. In one statement."""
    given = cast(bindparam("snapshot", dict(snapshot), type_=JSONB), JSONB)
    added = _add(firm_id, given).cte("added")
    key = await session.scalar(select(_key(given)).add_cte(added))
    assert key is not None  # a hash of a value, never null
    return key


@functools.cache
def _insert_with_form(columns: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """A draft's INSERT of these columns and its form's key, with its form's, in one statement
    (one round trip): the form as a data-modifying CTE, its firm the draft's own parameter. The
    foreign key is checked at the statement's end, when the form is there."""
    snapshot = cast(bindparam("form_snapshot"), JSONB)
    form = _add(bindparam("firm_id"), snapshot).cte("form")
    values: dict[str, Any] = {name: bindparam(name) for name in columns}
    statement = insert(_TABLE).values({**values, "form_key": _key(snapshot)}).add_cte(form)
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    return compiled.string, tuple(compiled.positiontup or ())


async def insert_declaration(
    conn: asyncpg.Connection,
    row: Mapping[str, Any],
    snapshot: Mapping[str, Any] | orjson.Fragment,
) -> None:
    """Insert a draft (``row``: its columns, none of them JSON, its form's key not among them)
    on a plain asyncpg connection (the write lane's), adding its form (``snapshot``, or its
    JSON as a fragment) unless the firm has it already."""
    sql, order = _insert_with_form(tuple(row))
    values = {**row, "form_snapshot": orjson.dumps(snapshot).decode()}
    await conn.execute(sql, *(values[name] for name in order))
