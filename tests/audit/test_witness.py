"""The witness of each chain's newest entry (app/audit/witness.py): entries cut off a chain's
end after its last signed checkpoint, or rewritten from there with hashes made anew, which a
chain cannot show, are caught; the witness is kept in Redis when the limits are, shared by
every process; unreadable, it costs only its own check."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import witness
from app.audit.verify_all import shared_witness, verify_firms
from app.cli import main
from app.db.engine import session_factory
from tests.audit.test_tamper import (
    append,
    failure,
    new_trail,
    rewrite,
    sign_head,
    signing_key,
    tamper,
    verify_graphql,
)
from tests.conftest import Database
from tests.factories import Members

REDIS = "redis://127.0.0.1:6379/0"


def sessions_of(app: Starlette) -> async_sessionmaker[AsyncSession]:
    """The app's own sessions, which tell its witness what they append."""
    sessions: async_sessionmaker[AsyncSession] = app.state.coverproof.sessions
    return sessions


async def test_entries_cut_off_after_the_last_checkpoint_are_caught(
    client: httpx.AsyncClient, app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Security page: "any tampering breaks the chain and is detectable". Only a signed
    checkpoint showed a cut-off end; one made after the last checkpoint verified as whole."""
    sessions = sessions_of(app)
    trail = await new_trail(members, sessions, 5)
    assert (await sign_head(sessions, trail, signing_key(app))).seq == 5
    await append(sessions, trail.actor, 2, start=6)
    assert (await verify_graphql(client, trail.admin))["ok"] is True
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq >= 6"],
        {"firm": trail.firm_id},
    )
    result = await verify_graphql(client, trail.admin)
    reason = "the chain ends at seq 5 but seq 7 was written"
    assert (result["ok"], result["headSeq"], result["failure"]) == (False, 5, failure(6, reason))


async def test_entries_rewritten_after_the_last_checkpoint_are_caught(
    client: httpx.AsyncClient, app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Rewritten from seq 4 with every hash made anew, the chain links up, and no checkpoint
    signs any of it; the witness holds seq 5's hash as written."""
    trail = await new_trail(members, sessions_of(app), 5)
    await rewrite(superuser_engine, trail.firm_id, [4], relink=True)
    result = await verify_graphql(client, trail.admin)
    reason = "hash differs from the one written: the chain was rewritten from here"
    assert (result["ok"], result["failure"]) == (False, failure(5, reason))


async def test_appends_outside_the_apps_sessions_are_not_witnessed(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The witness knows only what the app told it: a chain it never saw verifies as before."""
    trail = await new_trail(members, app_sessions, 3)
    assert await app.state.coverproof.witness.newest(str(trail.firm_id)) is None
    await append(sessions_of(app), trail.actor, 1, start=4)
    newest = await app.state.coverproof.witness.newest(str(trail.firm_id))
    assert newest is not None
    assert newest[0] == 4
    assert (await verify_graphql(client, trail.admin))["ok"] is True


async def test_redis_keeps_the_newest_entry_whatever_order_it_is_told_in() -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    kept = shared_witness(REDIS, prefix)
    assert isinstance(kept, witness.RedisWitness)
    other = shared_witness(REDIS, prefix)  # another process's
    assert other is not None
    try:
        await kept.saw({"a": (7, b"\x07" * 32), "b": (1, b"\x01" * 32)})
        await other.saw({"a": (6, b"\x06" * 32)})  # told late: kept as it was
        assert await other.newest("a") == (7, b"\x07" * 32)
        assert await kept.newest("b") == (1, b"\x01" * 32)
        assert await kept.newest("c") is None
        await other.forget("a")
        assert await kept.newest("a") is None
    finally:
        for seen in (kept, other):
            await seen.forget("a")
            await seen.forget("b")
            await seen.close()
    assert shared_witness("memory://", prefix) is None  # another process's memory: unreachable


async def test_an_unreadable_witness_leaves_verification_as_it_was(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trail = await new_trail(members, app_sessions, 2)
    unreachable = shared_witness("redis://127.0.0.1:1/0", "nowhere")
    results = await verify_firms(database.owner_url, trail.firm_id, seen=unreachable)
    assert [(firm, result.ok, result.entries_checked) for firm, result in results] == [
        (trail.firm_id, True, 2)
    ]
    assert "the audit witness could not be read" in caplog.text


async def test_the_cli_verifies_against_the_servers_witness_and_forgets_it_when_told(
    members: Members,
    app_engine: AsyncEngine,
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database restored from a backup lost the entries since: `audit verify` says so, and
    once that is accounted for, `audit forget-witness` lets verification start again."""
    prefix = f"test-{uuid.uuid4().hex}"
    seen = shared_witness(REDIS, prefix)
    assert seen is not None
    try:
        sessions = session_factory(app_engine, {witness.INFO: seen})  # a server's, sharing it
        trail = await new_trail(members, sessions, 3)
    finally:
        await seen.close()
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 3"],
        {"firm": trail.firm_id},
    )
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    monkeypatch.setenv("COVERPROOF_RATE_LIMIT_STORAGE", REDIS)
    monkeypatch.setenv("COVERPROOF_RATE_LIMIT_PREFIX", prefix)
    verify = ["audit", "verify", "--firm", str(trail.firm_id)]
    assert await asyncio.to_thread(main, verify) == 1
    broken = f"BROKEN firm {trail.firm_id} at seq 3: the chain ends at seq 2 but seq 3 was written"
    assert broken in capsys.readouterr().out
    forget = ["audit", "forget-witness", "--firm", str(trail.firm_id)]
    assert await asyncio.to_thread(main, forget) == 0
    assert await asyncio.to_thread(main, verify) == 0
    assert "ok: 1 chain(s), 2 entries verified" in capsys.readouterr().out
