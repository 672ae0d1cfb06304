"""The audit witness (app/audit/witness.py): entries cut off a chain's end after its last
signed checkpoint, or rewritten from there with hashes made anew, which a chain cannot show,
are caught, and stay caught as the chain grows; the witness is kept in Redis when the limits
are, shared by every process; unreadable, it costs only its own check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain, witness
from app.audit.verify_all import shared_witness, verify_firms
from app.auth.actor import Actor, ActorType, Role
from app.cli import main
from app.db.engine import session_factory
from app.db.tenant import tenant_transaction
from app.evidence import collect as collecting
from tests.audit.test_audit_graphql import RENAME
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
from tests.evidence.support import GENERATE, period
from tests.evidence.test_large import firm_with_declarations
from tests.factories import Members, gql

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
    assert (newest.runs[-1].first_seq, newest.runs[-1].seq, newest.diverged) == (4, 4, None)
    assert (await verify_graphql(client, trail.admin))["ok"] is True


def _told(first: int, seq: int, prev: int | None = None) -> witness.Told:
    """Entries ``first`` to ``seq`` appended by one commit, on a chain whose entry n hashes to
    n repeated (``prev``: the hash ``first`` was appended after, first - 1's by default)."""
    return witness.Told(
        first, bytes([first - 1 if prev is None else prev]) * 32, seq, bytes([seq]) * 32
    )


async def check_tellings(kept: witness.Witness, other: witness.Witness) -> None:
    """What a witness keeps, told by two processes in whatever order their commits come."""
    run = witness.Told
    await kept.saw({"a": _told(1, 5), "b": _told(1, 1)})
    await other.saw({"a": _told(8, 9)})  # 6 and 7 on their way: a second run
    apart = witness.Kept((_told(1, 5), _told(8, 9)))
    assert await kept.newest("a") == apart
    assert apart.required() == {  # each run's ends: 5, and 8's prev and 9
        5: bytes([5]) * 32,
        7: bytes([7]) * 32,
        9: bytes([9]) * 32,
    }
    await kept.saw({"a": _told(6, 7)})  # told late: it joins them
    whole = witness.Kept((run(1, bytes(32), 9, bytes([9]) * 32),))
    assert await other.newest("a") == whole
    assert await kept.newest("b") == witness.Kept((_told(1, 1),))
    assert await kept.newest("c") is None
    # Following a run from another hash than its newest: marked there; kept as it was.
    await other.saw({"a": _told(10, 10, prev=99)})
    assert await kept.newest("a") == whole._replace(diverged=9)
    await kept.saw({"a": _told(10, 10)})  # nothing changes once marked
    assert await other.newest("a") == whole._replace(diverged=9)
    # Overlapping a run (entries told again: cut off and appended anew): marked.
    await kept.saw({"b": run(1, bytes(32), 1, b"\x07" * 32)})
    assert await other.newest("b") == witness.Kept((_told(1, 1),), diverged=1)
    # Preceding a run, ending on another hash than the one it follows from: marked.
    await kept.saw({"c": _told(5, 6)})
    await other.saw({"c": run(3, bytes([2]) * 32, 4, b"\x4d" * 32)})
    assert await kept.newest("c") == witness.Kept((_told(5, 6),), diverged=4)
    await kept.forget("a")
    assert await other.newest("a") is None


async def check_runs_are_bounded(seen: witness.Witness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs apart (tellings lost) are kept up to MOST_RUNS; beyond, the two oldest are one."""
    monkeypatch.setattr(witness, "MOST_RUNS", 2)
    for first in (1, 3, 5):
        await seen.saw({"d": _told(first, first)})
    joined = witness.Told(1, bytes(32), 3, bytes([3]) * 32)
    assert await seen.newest("d") == witness.Kept((joined, _told(5, 5)))


async def test_the_witness_in_the_process_keeps_what_redis_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = witness.Witness()
    await check_tellings(seen, seen)
    await check_runs_are_bounded(seen, monkeypatch)


async def test_redis_keeps_the_runs_told_whatever_order_they_come_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    kept = shared_witness(REDIS, prefix)
    assert isinstance(kept, witness.RedisWitness)
    other = shared_witness(REDIS, prefix)  # another process's
    assert other is not None
    try:
        await check_tellings(kept, other)
        await check_runs_are_bounded(other, monkeypatch)
    finally:
        for seen in (kept, other):
            for chain in "abcd":
                await seen.forget(chain)
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


async def test_a_pack_made_while_the_firm_writes_is_not_reported_broken(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack is read in a snapshot: an entry another request committed (and told the witness
    of) once it began, before the witness was read, made it report the chain cut off, and the
    pack failed (a review). The witness is read before the snapshot begins."""
    owner = await firm_with_declarations(members, owner_sessions, 1)
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    confirmations = collecting.cover_confirmations

    async def meanwhile(session: AsyncSession, ids: Any) -> Any:
        await append(sessions_of(app), actor, 1, start=50)  # another request's
        return await confirmations(session, ids)

    monkeypatch.setattr(collecting, "cover_confirmations", meanwhile)
    body = await gql(client, GENERATE, {"i": {"title": "Written meanwhile", **period()}}, owner)
    pack = body["data"]["generateEvidencePack"]["pack"]
    assert (pack["status"], pack.get("failureReason")) == ("READY", None), pack


def test_forgetting_with_redis_away_is_refused_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVERPROOF_RATE_LIMIT_STORAGE", "redis://:s3cret@127.0.0.1:1/0")
    assert main(["audit", "forget-witness", "--platform"]) == 2
    refused = capsys.readouterr()
    assert "could not be reached" in refused.err
    assert "s3cret" not in refused.err + refused.out


async def test_a_chain_the_witness_marked_stays_broken_though_it_holds_the_entry_kept(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The mark alone fails it: it is kept however the chain looks since."""
    trail = await new_trail(members, app_sessions, 3)
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        whole = await chain.verify(session, trail.firm_id)
        told = witness.Told(1, bytes(32), whole.head_seq, whole.head_hash)
        marked = witness.Kept((told,), diverged=2)
        result = await chain.verify(session, trail.firm_id, written=marked)
    assert whole.ok
    assert (result.ok, result.failure_seq, result.failure_reason) == (
        False,
        2,
        "entries were cut off or rewritten from seq 2 or before",
    )


def test_audit_verify_runs_on_the_embedded_database(tmp_path: Path) -> None:
    """With no COVERPROOF_DATABASE_URL, `audit verify` starts the embedded database, which runs
    its own event loop: started inside the command's, it failed with a traceback (a review of
    the witness's first version)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERPROOF_")}
    env["COVERPROOF_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "verify", "--all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok: 1 chain(s), 0 entries verified" in done.stdout


async def test_a_firm_deleted_whole_with_its_chain_is_still_verified_by_the_cli(
    members: Members, app_engine: AsyncEngine, superuser_engine: AsyncEngine, database: Database
) -> None:
    """`audit verify` listed the chains the database holds: a firm deleted with its chain
    left nothing to list, and all was clear (a review). The chains the witness was told of
    are listed too."""
    seen = witness.Witness()
    trail = await new_trail(members, session_factory(app_engine, {witness.INFO: seen}), 3)
    async with superuser_engine.begin() as conn:
        await conn.execute(text("set local session_replication_role = replica"))
        for table, column in [
            ("audit_log", "firm_id"),
            ("memberships", "firm_id"),
            ("firms", "id"),
        ]:
            statement = text(f"delete from {table} where {column} = :f")
            await conn.execute(statement, {"f": trail.firm_id})
    for firm in (None, trail.firm_id):
        results = await verify_firms(database.owner_url, firm, seen=seen)
        # Other tests' firms, some tampered with, share the database: this one's is asked of.
        ours = [(v.ok, v.failure_reason) for fid, v in results if fid == trail.firm_id]
        assert ours == [(False, "the chain ends at seq 0 but seq 3 was written")], firm


REWRITTEN = "hash differs from the one written: the chain was rewritten from here"


@pytest.mark.parametrize("forged", [0, 1], ids=["rewritten", "rewritten-and-bridged"])
async def test_a_rewrite_is_caught_and_stays_caught_once_the_firm_acts_again(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
    forged: int,
) -> None:
    """Rewritten from seq 4 with every hash made anew, the chain links up, and no checkpoint
    signs any of it; the witness holds seq 5's hash as written. It kept only the newest entry
    it was told of: the firm's next action took its place, and an entry forged after the
    rewrite (never told) let it move on to that action unchecked (two reviews)."""
    trail = await new_trail(members, sessions_of(app), 5)
    await append(app_sessions, trail.actor, forged, start=6)  # inserted, never told
    await rewrite(superuser_engine, trail.firm_id, [4], relink=True)
    for action in range(2):
        result = await verify_graphql(client, trail.admin)
        assert (result["ok"], result["failure"]) == (False, failure(5, REWRITTEN)), action
        body = await gql(client, RENAME, {"name": f"Next {action} Ltd"}, trail.owner)
        assert "errors" not in body, body


@pytest.mark.parametrize(
    ("cut", "forged", "actions"),
    [("seq >= 4", 0, 3), ("seq = 5", 2, 1)],
    ids=["grown-past", "bridged"],
)
async def test_a_cut_tail_stays_caught_once_the_firm_has_grown_past_it(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
    cut: str,
    forged: int,
    actions: int,
) -> None:
    """Entries 4 and 5 cut off and the chain grown past them by the firm's own actions, or 5
    cut off and two entries forged in its place (never told) before the firm's next."""
    trail = await new_trail(members, sessions_of(app), 5)
    await tamper(
        superuser_engine,
        [f"delete from audit_log where firm_id = :firm and {cut}"],
        {"firm": trail.firm_id},
    )
    await append(app_sessions, trail.actor, forged, start=5)
    for n in range(actions):
        body = await gql(client, RENAME, {"name": f"Next {n} Ltd"}, trail.owner)
        assert "errors" not in body, body
        assert (await verify_graphql(client, trail.admin))["ok"] is False, n
    result = await verify_graphql(client, trail.admin)
    assert (result["headSeq"], result["failure"]) == (4, failure(5, REWRITTEN))
