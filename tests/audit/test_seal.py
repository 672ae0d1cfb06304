"""The seal (app/db/seal.py): coverproof_owner owns the audit tables, yet can change neither
them nor what guards them; and the server refuses to start on a database that is not sealed,
or whose audit tables changed since."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli import main
from app.db.safety import runtime_problems
from tests.conftest import Database

# What the owner of a table may otherwise do to it, each enough to change or drop entries, or
# to let a later command do so unchecked.
ATTEMPTS: dict[str, list[str]] = {
    "disable the trigger refusing updates": [
        "alter table audit_log disable trigger audit_log_no_update_delete"
    ],
    "disable every trigger of the checkpoints": [
        "alter table audit_checkpoints disable trigger user"
    ],
    "grant itself update and delete": ["grant update, delete on audit_log to coverproof_owner"],
    "grant the app role truncate": ["grant truncate on audit_checkpoints to coverproof_app"],
    "grant itself update on every table": [
        "grant update on all tables in schema public to coverproof_owner"
    ],
    "replace the function refusing changes": [
        "create or replace function audit_log_forbid_change() returns trigger "
        "language plpgsql as $$ begin return old; end $$"
    ],
    "replace the append check": [
        "create or replace function audit_log_check_append() returns trigger "
        "language plpgsql as $$ begin return new; end $$"
    ],
    "drop a trigger": ["drop trigger audit_log_no_truncate on audit_log"],
    "add a trigger of its own": [
        "create function rewrite_entry() returns trigger language plpgsql as "
        "$$ begin new.action := 'rewritten'; return new; end $$",
        "create trigger a_rewrite before insert on audit_log "
        "for each row execute function rewrite_entry()",
    ],
    "rewrite a column in place": [
        "alter table audit_log alter column action type text using 'rewritten'"
    ],
    "rename the table away": ["alter table audit_log rename to audit_log_old"],
    "turn appends into nothing": ["create rule quiet as on insert to audit_log do instead nothing"],
    "a child table whose rows read as entries": [
        "create table audit_log_more () inherits (audit_log)"
    ],
    "a policy of its own": [
        "create policy everything on audit_log for all to coverproof_owner using (true)"
    ],
    "stop forcing row security": ["alter table audit_log no force row level security"],
    "drop the checkpoints": ["drop table audit_checkpoints cascade"],
    # A table of pg_temp is found before pg_catalog's unless the search path says otherwise.
    "a copy of the catalog in pg_temp first": [
        "create temp table pg_proc as select * from pg_catalog.pg_proc",
        "create or replace function audit_log_forbid_change() returns trigger "
        "language plpgsql as $$ begin return old; end $$",
    ],
    "an event trigger of its own in pg_temp": [
        "create temp table pg_event_trigger as select evtname, "
        "'coverproof_owner'::regrole::oid as evtowner from pg_catalog.pg_event_trigger",
        "alter table audit_log disable trigger audit_log_no_update_delete",
    ],
}

SEALED_AS_NOW = text(
    "select coverproof_seal.audit_state() = (select state from coverproof_seal.sealed)"
)


async def _sealed_as_now(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(SEALED_AS_NOW))


@pytest.mark.parametrize("statements", ATTEMPTS.values(), ids=ATTEMPTS.keys())
async def test_the_owner_cannot_change_the_audit_tables_or_what_guards_them(
    owner_engine: AsyncEngine, superuser_engine: AsyncEngine, statements: list[str]
) -> None:
    """Each attempt fails on its last statement, naming the seal, and leaves the tables as
    sealed. (Rolled back all the same: had one got through, the next test would not know.)"""
    async with owner_engine.connect() as conn:
        tx = await conn.begin()
        try:
            for statement in statements[:-1]:
                await conn.execute(text(statement))
            with pytest.raises(DBAPIError, match="The audit trail is sealed: coverproof_owner"):
                await conn.execute(text(statements[-1]))
        finally:
            await tx.rollback()
    assert await _sealed_as_now(superuser_engine)


async def test_the_owner_may_still_change_everything_else(owner_engine: AsyncEngine) -> None:
    """A migration that leaves the audit tables alone runs sealed: tables, functions and
    indexes of its own, an index on the audit log too."""
    async with owner_engine.connect() as conn:
        tx = await conn.begin()
        try:
            await conn.execute(text("create table sealed_probe (id int primary key)"))
            await conn.execute(text("alter table sealed_probe add column note text"))
            await conn.execute(text("create index sealed_probe_action on audit_log (action)"))
            await conn.execute(text("drop table sealed_probe"))
        finally:
            await tx.rollback()


async def test_the_server_refuses_an_unsealed_database(superuser_engine: AsyncEngine) -> None:
    """Seal lifted (in a transaction rolled back), the start-up check names it."""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        assert not [p for p in await runtime_problems(conn) if "seal" in p]
        await conn.execute(text("drop event trigger coverproof_audit_seal"))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert "the audit trail is not sealed (`coverproof db seal`, as an administrator)" in problems


async def test_the_server_refuses_audit_tables_changed_since_they_were_sealed(
    superuser_engine: AsyncEngine,
) -> None:
    """A superuser passes the seal (as the event trigger's owner may: either could drop it);
    what it changed is still found at the next start."""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("alter table audit_log disable trigger audit_log_no_truncate"))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert "the audit tables changed since they were sealed" in problems


async def test_an_administrator_unseals_for_a_migration_and_seals_again(
    database: Database,
    owner_engine: AsyncEngine,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``coverproof db unseal`` lets the owner's migration change the audit tables;
    ``coverproof db seal`` takes them as they are then, and the owner is refused again."""
    monkeypatch.setenv("COVERPROOF_SEAL_DATABASE_URL", database.superuser_url)
    comment = "comment on table audit_checkpoints is 'Signed chain heads.'"
    try:
        assert await asyncio.to_thread(main, ["db", "unseal"]) == 0
        async with owner_engine.begin() as conn:
            await conn.execute(text(comment))
        assert await asyncio.to_thread(main, ["db", "seal"]) == 0
    finally:
        await asyncio.to_thread(main, ["db", "seal"])
    assert "sealed" in capsys.readouterr().out
    assert await _sealed_as_now(superuser_engine)
    async with owner_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="The audit trail is sealed"):
            await conn.execute(text("comment on table audit_checkpoints is null"))
    async with superuser_engine.connect() as conn:
        assert not [p for p in await runtime_problems(conn) if "seal" in p]


def test_sealing_a_managed_database_needs_an_administrators_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", "postgresql://coverproof_app@127.0.0.1/x")
    monkeypatch.delenv("COVERPROOF_SEAL_DATABASE_URL", raising=False)
    assert main(["db", "seal"]) == 2
    assert "COVERPROOF_SEAL_DATABASE_URL" in capsys.readouterr().err
