"""Tampering with the audit trail, as only someone with superuser or owner rights could, is
caught by the server (GraphQL ``verifyAuditChain`` and ``chain.verify``) and by the offline
verifier (``tools/verify_audit.py``) run over an export taken after the tampering, each naming
the first bad seq (server) or line (offline)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import canonical, chain, checkpoints
from app.audit.actions import Action
from app.audit.export import export_lines
from app.audit.signing import SigningKey, checkpoint_payload, key_id
from app.auth.actor import Actor, ActorType, Role
from app.db.engine import session_factory
from app.db.models import AuditCheckpoint
from app.db.tenant import bind_tenant, tenant_transaction
from app.errors import AuditChainBroken
from tests.factories import Member, Members, codes, gql

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "tools" / "verify_audit.py"
BATCH = 500

VERIFY = """{ verifyAuditChain { ok entriesChecked headSeq checkpointsChecked
  failure { seq reason checkpointId } } }"""
CHECKPOINT = "mutation { createAuditCheckpoint { checkpoint { id seq headHash } } }"


# --- helpers shared by the audit test files -------------------------------------------------


@dataclass(frozen=True)
class Trail:
    """A firm with an owner and an admin (both signed in) and its chain."""

    owner: Member
    admin: Member

    @property
    def firm_id(self) -> uuid.UUID:
        return self.owner.firm_id

    @property
    def actor(self) -> Actor:
        return Actor(ActorType.USER, self.owner.user_id, self.firm_id, Role.OWNER, ip="203.0.113.9")


def signing_key(app: Starlette) -> SigningKey:
    key: SigningKey = app.state.coverproof.signing_key
    return key


async def append(
    sessions: async_sessionmaker[AsyncSession], actor: Actor, count: int, start: int = 1
) -> None:
    """Append ``count`` firm.updated entries (numbered from ``start``) in batches of 500."""
    for first in range(start, start + count, BATCH):
        async with tenant_transaction(sessions, actor.firm_id, actor.id) as session:
            for n in range(first, min(first + BATCH, start + count)):
                await chain.record(
                    session,
                    actor,
                    Action.FIRM_UPDATED,
                    "firm",
                    actor.firm_id,
                    {"changes": {"name": {"from": f"Name {n - 1} Ltd", "to": f"Name {n} Ltd"}}},
                )


async def new_trail(
    members: Members, sessions: async_sessionmaker[AsyncSession], entries: int
) -> Trail:
    owner = await members.create(Role.OWNER)
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    trail = Trail(owner, admin)
    await append(sessions, trail.actor, entries)
    return trail


async def sign_head(
    sessions: async_sessionmaker[AsyncSession], trail: Trail, key: SigningKey
) -> AuditCheckpoint:
    """The head signed as the periodic checkpointer signs it (no entry of its own)."""
    async with tenant_transaction(sessions, trail.firm_id) as session:
        checkpoint, _ = await checkpoints.sign_head(session, trail.firm_id, key)
    assert checkpoint is not None
    return checkpoint


async def tamper(
    superuser_engine: AsyncEngine,
    statements: list[str],
    params: list[dict[str, Any]] | dict[str, Any] | None = None,
    table: str = "audit_log",
) -> None:
    """What only a superuser could do: disable the append-only trigger, edit, re-enable it."""
    trigger = {
        "audit_log": "audit_log_no_update_delete",
        "audit_checkpoints": "audit_checkpoints_no_update_delete",
    }[table]
    async with superuser_engine.begin() as conn:
        await conn.execute(text(f"alter table {table} disable trigger {trigger}"))
        for statement in statements:
            await conn.execute(text(statement), params or {})
        await conn.execute(text(f"alter table {table} enable trigger {trigger}"))


_ROW_FIELDS = (
    "firm_id, seq, occurred_at, actor_type, actor_id, action, target_type, target_id, "
    "details, ip, prev_hash, hash, canonical"
)


def _canonical(row: Any, details: dict[str, Any]) -> bytes:
    return canonical.encode(
        canonical.entry_body(
            firm_id=str(row.firm_id),
            seq=row.seq,
            occurred_at=row.occurred_at,
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            details=details,
            ip=row.ip,
        )
    )


async def rewrite(
    superuser_engine: AsyncEngine,
    firm_id: uuid.UUID,
    seqs: list[int],
    relink: bool,
    forged: dict[str, Any] | None = None,
) -> None:
    """An attacker's rewrite: new details (``forged``, or a forged firm name) for each of
    ``seqs``, with canonical bytes and hash recomputed so each rewritten entry is
    self-consistent. With ``relink`` every later entry's prev_hash and hash are recomputed too
    (the whole chain rebuilt from genesis)."""
    async with superuser_engine.begin() as conn:
        await conn.execute(text("alter table audit_log disable trigger audit_log_no_update_delete"))
        rows = (
            await conn.execute(
                text(f"select {_ROW_FIELDS} from audit_log where firm_id = :firm order by seq"),
                {"firm": firm_id},
            )
        ).all()
        prev_hash = canonical.GENESIS
        for row in rows:
            details = dict(row.details)
            if row.seq in seqs:
                details = forged or {
                    "changes": {"name": {"from": "Forged Ltd", "to": "Forged Ltd"}}
                }
            if row.seq in seqs or relink:
                body = _canonical(row, details)
                new_hash = canonical.chain_hash(prev_hash, body)
                await conn.execute(
                    text(
                        "update audit_log set details = cast(:details as jsonb), prev_hash = :prev,"
                        " canonical = :body, hash = :hash where firm_id = :firm and seq = :seq"
                    ),
                    {
                        "details": canonical.encode(details).decode(),
                        "prev": prev_hash,
                        "body": body,
                        "hash": new_hash,
                        "firm": firm_id,
                        "seq": row.seq,
                    },
                )
                prev_hash = new_hash
            else:
                prev_hash = row.hash
        await conn.execute(text("alter table audit_log enable trigger audit_log_no_update_delete"))


async def export(
    sessions: async_sessionmaker[AsyncSession],
    firm_id: uuid.UUID,
    key: SigningKey,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[str]:
    """The export, line by line, read in the firm's tenant context."""
    async with tenant_transaction(sessions, firm_id) as session:
        return [line async for line in export_lines(session, firm_id, key, start, end)]


def resign(lines: list[str], key: SigningKey) -> list[str]:
    """Sign an edited export again (as only the platform could), so the verifier's deeper
    checks, not the trailer's signature, are what a test exercises."""
    body = [line for line in lines if '"type":"signature"' not in line]
    digest = hashlib.sha256("".join(body).encode()).digest()
    trailer = {
        "type": "signature",
        "sha256": digest.hex(),
        "key_id": key.key_id,
        "signature": base64.b64encode(key.sign(digest)).decode(),
    }
    return [*body, json.dumps(trailer, sort_keys=True, separators=(",", ":")) + "\n"]


async def run_verifier(export_path: Path, key_path: Path) -> tuple[int, str]:
    """Run tools/verify_audit.py as a user would; returns (exit code, stdout)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(VERIFIER),
        str(export_path),
        str(key_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def verify_offline(
    tmp_path: Path, lines: list[str], key: SigningKey | str, name: str = "export"
) -> tuple[int, str]:
    """Write the export and the public key to files and run the offline verifier on them."""
    export_path = tmp_path / f"{name}.jsonl"
    export_path.write_text("".join(lines), encoding="utf-8")
    key_path = tmp_path / f"{name}-key.pem"
    key_path.write_text(key if isinstance(key, str) else key.public_pem())
    return await run_verifier(export_path, key_path)


async def verify_graphql(client: httpx.AsyncClient, admin: Member) -> dict[str, Any]:
    body = await gql(client, VERIFY, None, admin)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["verifyAuditChain"]
    return result


async def verify_server(
    sessions: async_sessionmaker[AsyncSession], trail: Trail, key: SigningKey
) -> chain.Verification:
    async with tenant_transaction(sessions, trail.firm_id) as session:
        return await chain.verify(session, trail.firm_id, key.trusted)


def failure(seq: int, reason: str, checkpoint: uuid.UUID | None = None) -> dict[str, Any]:
    return {
        "seq": seq,
        "reason": reason,
        "checkpointId": None if checkpoint is None else str(checkpoint),
    }


async def assert_intact(
    client: httpx.AsyncClient,
    trail: Trail,
    sessions: async_sessionmaker[AsyncSession],
    key: SigningKey,
    tmp_path: Path,
    entries: int,
    signed: int = 0,
) -> None:
    """The chain verifies before any tampering, on the server and offline."""
    result = await verify_graphql(client, trail.admin)
    assert result == {
        "ok": True,
        "entriesChecked": entries,
        "headSeq": entries,
        "checkpointsChecked": signed,
        "failure": None,
    }
    code, out = await verify_offline(tmp_path, await export(sessions, trail.firm_id, key), key)
    assert code == 0, out
    assert out.startswith(f"OK: firm {trail.firm_id}: full export, exported ")
    assert f": entries 1..{entries} ({entries}) of {entries} intact, " in out
    assert f" {signed} signed checkpoint(s) verified" in out
    assert out.endswith(f", signed by key {key.key_id}\n")


# --- 1. a changed field ----------------------------------------------------------------------


async def test_a_field_changed_in_the_row_only_is_named_at_its_seq(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5)
    await tamper(
        superuser_engine,
        [
            'update audit_log set details = \'{"changes": {"name": {"to": "Forged Ltd"}}}\''
            " where firm_id = :firm and seq = 3"
        ],
        {"firm": trail.firm_id},
    )

    reason = "stored fields differ from the entry's canonical bytes"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        2,
        failure(3, reason),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_reason) == (False, 3, reason)

    # The export taken now must not vouch for a trail the server shows as altered: the row's
    # fields, as the server displays them, no longer hash to the stored hash of seq 3.
    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (
        1,
        "BROKEN: line 4: seq 3: hash is not SHA-256(prev_hash || canonical)\n",
    )


# --- 2. a rewritten entry with its canonical bytes and hash recomputed -----------------------


async def test_a_self_consistent_rewrite_is_caught_at_the_next_link(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5)
    await rewrite(superuser_engine, trail.firm_id, [3], relink=False)

    # Seq 3 on its own is consistent: its fields, canonical bytes and hash agree.
    async with tenant_transaction(owner_sessions, trail.firm_id) as session:
        row = (
            await session.execute(
                text(f"select {_ROW_FIELDS} from audit_log where firm_id = :firm and seq = 3"),
                {"firm": trail.firm_id},
            )
        ).one()
    assert row.details == {"changes": {"name": {"from": "Forged Ltd", "to": "Forged Ltd"}}}
    assert row.canonical == _canonical(row, row.details)
    assert row.hash == canonical.chain_hash(row.prev_hash, row.canonical)

    reason = "prev_hash does not match the previous entry's hash"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        3,
        failure(4, reason),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_reason) == (False, 4, reason)

    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (1, "BROKEN: line 5: seq 4: prev_hash is not the previous entry's hash\n")


async def test_a_self_consistent_rewrite_of_the_last_entry_is_caught_by_the_checkpoint(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    made = await sign_head(app_sessions, trail, key)
    assert made.seq == 5
    checkpoint_id = made.id
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5, signed=1)
    await rewrite(superuser_engine, trail.firm_id, [5], relink=False)

    reason = f"checkpoint {checkpoint_id} signed a different hash at seq 5: the chain was rewritten"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        4,
        failure(5, reason, checkpoint_id),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_checkpoint) == (False, 5, checkpoint_id)

    lines = await export(owner_sessions, trail.firm_id, key)
    assert len(lines) == 8  # header, 5 entries, the checkpoint, the signed trailer
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (
        1,
        "BROKEN: line 7: checkpoint at seq 5 signed another hash (rewritten)\n",
    )


# --- 3. a deleted middle entry ---------------------------------------------------------------


async def test_a_deleted_middle_entry_is_reported_as_a_gap_at_its_seq(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 3"],
        {"firm": trail.firm_id},
    )

    reason = "seq 4 found where 3 was expected (entry missing or moved)"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        2,
        failure(3, reason),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_reason) == (False, 3, reason)

    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (1, "BROKEN: line 4: seq 4 follows seq 2 (entry missing or moved)\n")


async def test_a_row_below_seq_1_fails_a_verification_from_the_start(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """A superuser who drops the constraint on seq can put a row at seq 0, before the chain,
    which the product would list with the firm's entries: a verification from the start meets
    it. In one transaction, rolled back: the constraint is the database's, shared."""
    trail = await new_trail(members, app_sessions, 2)
    async with superuser_engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("alter table audit_log drop constraint audit_log_seq_check"))
        await conn.execute(text("set local session_replication_role = replica"))  # no triggers
        await conn.execute(
            text(
                f"insert into audit_log (id, {_ROW_FIELDS}) select :id, firm_id, 0, "
                "occurred_at, actor_type, actor_id, 'member.role_changed', target_type, "
                "target_id, details, ip, prev_hash, hash, canonical from audit_log "
                "where firm_id = :firm and seq = 1"
            ),
            {"id": uuid.uuid4(), "firm": trail.firm_id},
        )
        session = AsyncSession(bind=conn)
        await bind_tenant(session, trail.firm_id, None)
        verified = await chain.verify(session, trail.firm_id)
        await transaction.rollback()
    reason = "seq 0 found where 1 was expected (entry missing or moved)"
    assert (verified.ok, verified.failure_seq, verified.failure_reason) == (False, 1, reason)


# --- 4. a deleted tail after a checkpoint ----------------------------------------------------


async def test_deleted_leading_entries_are_caught_offline_in_a_full_export(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq <= 2"],
        {"firm": trail.firm_id},
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq) == (False, 1)
    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, lines, key, "headless")
    assert (code, out) == (
        1,
        "BROKEN: line 2: a full export starts at seq 3, not 1 (entries removed)\n",
    )


@pytest.mark.parametrize("first_deleted", [5, 4], ids=["from-the-signed-seq", "before-it"])
async def test_a_tail_cut_off_after_a_checkpoint_is_named_by_the_checkpoint(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
    first_deleted: int,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    checkpoint = await sign_head(app_sessions, trail, key)
    assert checkpoint.seq == 5
    await append(app_sessions, trail.actor, 1, start=6)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 6, signed=1)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq >= :first"],
        {"firm": trail.firm_id, "first": first_deleted},
    )

    end = first_deleted - 1
    reason = f"the chain ends at seq {end} but checkpoint {checkpoint.id} signed seq 5"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["headSeq"], result["failure"]) == (
        False,
        end,
        end,
        failure(end + 1, reason, checkpoint.id),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_checkpoint, direct.failure_reason) == (
        False,
        checkpoint.id,
        reason,
    )

    lines = await export(owner_sessions, trail.firm_id, key)
    assert len(lines) == 1 + end + 2  # header, the remaining entries, checkpoint, trailer
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (
        1,
        f"BROKEN: line {end + 2}: checkpoint signs seq 5, beyond the export (cut off)\n",
    )


# --- 5. a reordered pair ---------------------------------------------------------------------


async def test_a_swapped_pair_of_entries_is_caught_at_the_first_of_them(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 5)
    await tamper(
        superuser_engine,
        [
            "update audit_log set seq = 1000003 where firm_id = :firm and seq = 3",
            "update audit_log set seq = 3 where firm_id = :firm and seq = 4",
            "update audit_log set seq = 4 where firm_id = :firm and seq = 1000003",
        ],
        {"firm": trail.firm_id},
    )

    reason = "prev_hash does not match the previous entry's hash"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        2,
        failure(3, reason),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_reason) == (False, 3, reason)

    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (1, "BROKEN: line 4: seq 3: prev_hash is not the previous entry's hash\n")


# --- 6. a whole chain rebuilt, and forged checkpoints ----------------------------------------


async def test_a_whole_chain_rebuilt_from_genesis_is_caught_only_by_the_signed_checkpoint(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 4)
    checkpoint = await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 2, start=5)
    await assert_intact(client, trail, owner_sessions, key, tmp_path, 6, signed=1)
    before = await export(owner_sessions, trail.firm_id, key)
    await rewrite(superuser_engine, trail.firm_id, [1, 2, 3, 4, 5, 6], relink=True)

    lines = await export(owner_sessions, trail.firm_id, key)
    entries = [line for line in lines if '"type":"entry"' in line]
    assert len(entries) == 6
    assert all(new != old for new, old in zip(entries, before[1:7], strict=True))
    assert all("Forged Ltd" in line for line in entries)
    # The rebuilt chain is consistent in itself: without the checkpoint, it would pass.
    code, out = await verify_offline(tmp_path, resign(lines[:7], key), key, "no-checkpoint")
    assert code == 0, out
    assert ": entries 1..6 (6) of 6 intact, 0 signed " in out

    reason = f"checkpoint {checkpoint.id} signed a different hash at seq 4: the chain was rewritten"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        3,
        failure(4, reason, checkpoint.id),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_checkpoint) == (False, 4, checkpoint.id)

    assert len(lines) == 9  # header, 6 entries, the checkpoint, the signed trailer
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    assert (code, out) == (
        1,
        "BROKEN: line 8: checkpoint at seq 4 signed another hash (rewritten)\n",
    )


async def _forge_by_altering_the_signature(
    superuser_engine: AsyncEngine, app_sessions: async_sessionmaker[AsyncSession], trail: Trail
) -> None:
    await tamper(
        superuser_engine,
        [
            "update audit_checkpoints set signature = set_byte(signature, 10, "
            "get_byte(signature, 10) # 1) where firm_id = :firm and seq = 3"
        ],
        {"firm": trail.firm_id},
        table="audit_checkpoints",
    )


async def _forge_with_another_key(
    superuser_engine: AsyncEngine, app_sessions: async_sessionmaker[AsyncSession], trail: Trail
) -> None:
    """Sign the (real) head with an Ed25519 key that is not the platform's, and store it the
    way the app would: the app role may insert checkpoints."""
    other = SigningKey(Ed25519PrivateKey.generate())
    async with tenant_transaction(app_sessions, trail.firm_id, trail.owner.user_id) as session:
        head = (
            await session.execute(
                text("select seq, hash from audit_log where firm_id = :firm and seq = 3"),
                {"firm": trail.firm_id},
            )
        ).one()
        signed_at = datetime.now(UTC)
        await session.execute(
            text(
                "insert into audit_checkpoints (id, firm_id, seq, head_hash, signed_at, key_id, "
                "signature, created_by) values (:id, :firm, 3, :hash, :at, :kid, :sig, 'system')"
            ),
            {
                "id": uuid.uuid4(),
                "firm": trail.firm_id,
                "hash": head.hash,
                "at": signed_at,
                "kid": key_id(other.public),
                "sig": other.sign(checkpoint_payload(trail.firm_id, 3, head.hash, signed_at)),
            },
        )


@pytest.mark.parametrize(
    "forge",
    [_forge_by_altering_the_signature, _forge_with_another_key],
    ids=["altered-signature", "another-key"],
)
async def test_a_forged_checkpoint_is_refused(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
    forge: Any,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    if forge is _forge_by_altering_the_signature:
        await sign_head(app_sessions, trail, key)
        await assert_intact(client, trail, owner_sessions, key, tmp_path, 3, signed=1)
    else:
        await assert_intact(client, trail, owner_sessions, key, tmp_path, 3)
    await forge(superuser_engine, app_sessions, trail)
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        forged_id, named = (
            await session.execute(
                text("select id, key_id from audit_checkpoints where firm_id = :firm and seq = 3"),
                {"firm": trail.firm_id},
            )
        ).one()

    reason = f"checkpoint {forged_id} at seq 3 does not carry a valid signature"
    if forge is _forge_with_another_key:  # it names the key that signed it: not one of ours
        assert named != key.key_id
        reason = f"checkpoint {forged_id} at seq 3 names key {named}, not one of ours"
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["entriesChecked"], result["failure"]) == (
        False,
        2,
        failure(3, reason, forged_id),
    )
    direct = await verify_server(app_sessions, trail, key)
    assert (direct.ok, direct.failure_seq, direct.failure_checkpoint) == (False, 3, forged_id)

    lines = await export(owner_sessions, trail.firm_id, key)
    assert len(lines) == 6  # header, 3 entries, the checkpoint, the signed trailer
    code, out = await verify_offline(tmp_path, lines, key, "tampered")
    if forge is _forge_by_altering_the_signature:
        assert (code, out) == (1, "BROKEN: line 5: checkpoint at seq 3: signature invalid\n")
    else:
        # It names the key that signed it, which is not the platform's: refused as such.
        assert (code, out) == (
            1,
            "BROKEN: line 5: checkpoint of another firm or key\n",
        )
        # Made to name the platform's key (and re-signed, as only the platform could), its
        # signature is still checked against the platform's key, and refused.
        other_id = json.loads(lines[4])["key_id"]
        assert other_id != key.key_id
        claimed = lines[4].replace(f'"key_id":"{other_id}"', f'"key_id":"{key.key_id}"')
        assert claimed != lines[4]
        edited = resign([*lines[:4], claimed], key)
        code, out = await verify_offline(tmp_path, edited, key, "claimed")
        assert (code, out) == (1, "BROKEN: line 5: checkpoint at seq 3: signature invalid\n")


async def test_a_checkpoint_beside_ours_at_its_seq_is_refused(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """A seq may hold one checkpoint per key (migration 0014, for signing again after a key is
    revoked): a row another key signed beside ours is checked as well, and refused, every time;
    signing neither resumes from it nor stops for it."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, key)
    await _forge_with_another_key(superuser_engine, app_sessions, trail)
    for _ in range(3):
        result = await verify_graphql(client, trail.admin)
        assert (result["ok"], result["failure"]["seq"]) == (False, 3), result
        assert result["failure"]["reason"].endswith(", not one of ours"), result
    # Nor does it stop signing (a row anyone with the table may add would stop it for good):
    # the head, signed already, is answered with our checkpoint, and a later one is signed.
    signed = await gql(client, CHECKPOINT, None, trail.admin)
    assert signed["data"]["createAuditCheckpoint"]["checkpoint"]["seq"] == 3, signed
    await append(app_sessions, trail.actor, 1, start=4)
    assert (await sign_head(app_sessions, trail, key)).seq == 4
    result = await verify_graphql(client, trail.admin)
    assert result["failure"]["reason"].endswith(", not one of ours"), result


async def test_a_checkpoint_is_checked_against_the_published_key_not_the_one_it_names(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """A genuine checkpoint fails offline against any other public key."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, key)
    lines = await export(owner_sessions, trail.firm_id, key)
    assert len(lines) == 5  # header, 2 entries, the checkpoint, the signed trailer
    code, out = await verify_offline(tmp_path, lines, key)
    assert code == 0, out
    assert ": entries 1..2 (2) of 2 intact, 1 signed " in out
    other = SigningKey(Ed25519PrivateKey.generate())
    code, out = await verify_offline(tmp_path, lines, other.public_pem(), "other-key")
    refused = f"BROKEN: line {len(lines)}: the export is not signed by a key given\n"
    assert (code, out) == (1, refused)

    # Re-signed by the other key, the header still names ours: refused.
    code, out = await verify_offline(tmp_path, resign(lines, other), other.public_pem(), "both")
    assert (code, out) == (
        1,
        "BROKEN: line 1: not a CoverProof audit export (version 1 or 2) for this key\n",
    )

    def naming_other(line: str) -> str:
        renamed = line.replace(f'"key_id":"{key.key_id}"', f'"key_id":"{other.key_id}"')
        assert renamed != line
        return renamed

    # With the header naming the other key too, the checkpoint still names ours: refused.
    header_only = resign([naming_other(lines[0]), *lines[1:]], other)
    code, out = await verify_offline(tmp_path, header_only, other.public_pem(), "header")
    assert (code, out) == (
        1,
        "BROKEN: line 4: checkpoint of another firm or key\n",
    )
    # And with the checkpoint naming it as well, its signature (ours) fails with the other key.
    everywhere = resign([naming_other(lines[0]), *lines[1:3], naming_other(lines[3])], other)
    code, out = await verify_offline(tmp_path, everywhere, other.public_pem(), "everywhere")
    assert (code, out) == (1, "BROKEN: line 4: checkpoint at seq 2: signature invalid\n")
    signature = base64.b64decode(lines[3].split('"signature":"')[1].split('"')[0])
    assert len(signature) == 64


async def test_the_offline_verifier_requires_the_exact_format_and_the_trailer(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """Every line has exactly its type's fields and a checkpoint's time its one format (each
    edit re-signed, as only the platform could, to reach those checks); an export without its
    signed trailer, or with a line after it, is refused."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, key)
    lines = await export(owner_sessions, trail.firm_id, key)
    assert [json.loads(line)["type"] for line in lines] == [
        "header",
        "entry",
        "entry",
        "checkpoint",
        "signature",
    ]

    def edited(number: int, change: Any) -> list[str]:
        item = json.loads(lines[number - 1])
        change(item)
        line = json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n"
        return resign([*lines[: number - 1], line, *lines[number:]], key)

    cases = [
        (
            edited(2, lambda item: item.update(note="added")),
            2,
            "unexpected fields for its line type",
        ),
        (edited(4, lambda item: item.pop("id")), 4, "unexpected fields for its line type"),
        (
            edited(1, lambda item: item.update(type="entry")),
            1,
            "unexpected fields for its line type",
        ),
        (
            edited(4, lambda item: item.update(signed_at=item["signed_at"][:-1] + "+00:00")),
            4,
            "malformed signed_at in the checkpoint line",
        ),
        (lines[:-1], 4, "the export is not signed by a key given"),
        ([*lines, lines[1]], 6, "the export is not signed by a key given"),
        ([*lines, lines[-1]], 6, "the signature does not cover these bytes (file changed)"),
    ]
    for n, (changed, number, reason) in enumerate(cases):
        code, out = await verify_offline(tmp_path, changed, key, f"case-{n}")
        assert (code, out) == (1, f"BROKEN: line {number}: {reason}\n"), n


# --- 7. the database refuses changes ---------------------------------------------------------


async def _refusal(
    sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID, *statements: str
) -> str:
    """Run the statements in the firm's tenant context and return the database's refusal of
    the last. The transaction is always rolled back, so a statement wrongly allowed changes
    nothing."""
    async with sessions() as session:
        await session.begin()
        try:
            await bind_tenant(session, firm_id, None)
            for statement in statements[:-1]:
                await session.execute(text(statement))
            with pytest.raises(DBAPIError) as refused:
                await session.execute(text(statements[-1]))
        finally:
            await session.rollback()
    return str(refused.value.orig)


APPEND_ONLY_TABLES = ["audit_log", "audit_checkpoints"]


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("role", ["app", "owner"])
async def test_no_role_of_ours_may_update_delete_or_truncate(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    table: str,
    role: str,
) -> None:
    """Neither the app's role nor the tables' owner (the migrations' and the CLI's role)
    holds the privileges: the database revokes them."""
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, signing_key(app))
    sessions = app_sessions if role == "app" else owner_sessions
    for statement in [
        f"update {table} set seq = seq + 1",
        f"delete from {table}",
        f"truncate {table}",
    ]:
        message = await _refusal(sessions, trail.firm_id, statement)
        assert f"permission denied for table {table}" in message, (statement, message)


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
async def test_a_role_holding_the_privileges_is_stopped_by_the_append_only_trigger(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    table: str,
) -> None:
    """The trigger is the second barrier: a superuser holds every privilege, and is stopped
    all the same unless it disables the trigger first (as ``tamper`` does)."""
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, signing_key(app))
    for statement, operation in [
        (f"update {table} set seq = seq + 1000 where firm_id = '{trail.firm_id}'", "UPDATE"),
        (f"delete from {table} where firm_id = '{trail.firm_id}'", "DELETE"),
        (f"truncate {table} cascade", "TRUNCATE"),
    ]:
        message = await _refusal(session_factory(superuser_engine), trail.firm_id, statement)
        assert "append-only" in message, (statement, message)
        assert f"{operation} is not allowed" in message, (statement, message)
    # and nothing changed
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        counts = (
            await session.execute(
                text(
                    "select (select count(*) from audit_log where firm_id = :firm), "
                    "(select count(*) from audit_checkpoints where firm_id = :firm)"
                ),
                {"firm": trail.firm_id},
            )
        ).one()
    assert tuple(counts) == (2, 1)


# --- signing only a chain that extends the last checkpoint ---------------------------------


async def test_a_first_checkpoint_is_signed_only_over_a_chain_that_verifies(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """With no checkpoint to extend, the whole chain is checked before its head is signed: a
    first checkpoint would otherwise vouch for a chain already broken."""
    trail = await new_trail(members, app_sessions, 3)
    await rewrite(superuser_engine, trail.firm_id, [2], relink=False)
    refused = await gql(client, CHECKPOINT, None, trail.admin)
    assert refused["errors"][0]["extensions"]["code"] == "AUDIT_CHAIN_BROKEN", refused
    assert refused["errors"][0]["message"] == (
        "The audit trail does not verify: seq 3: prev_hash does not match the previous "
        "entry's hash."
    )
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        assert await checkpoints.newest(session, trail.firm_id, signing_key(app)) is None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (
            "a later entry rewritten",
            "does not extend its checkpoint at seq 3: "
            "seq 5: prev_hash does not match the previous entry's hash.",
        ),
        (
            "the chain rebuilt from genesis",
            "does not extend its checkpoint at seq 3: "
            "seq 4: prev_hash does not match the previous entry's hash.",
        ),
        ("the signed entry rewritten", "The entry at seq 3 is not the one its checkpoint signed."),
        ("the signed entry cut off", "ends at seq 2, before its checkpoint at seq 3."),
    ],
)
async def test_a_chain_that_does_not_extend_its_last_checkpoint_is_not_signed(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    case: str,
    reason: str,
) -> None:
    """Once seq 3 is signed, the platform signs a later head only if the entries after it
    still link on from the hash it signed: a checkpoint of a rewritten or cut-off chain would
    vouch for the rewrite (and outlive the older checkpoints, were those deleted)."""
    trail = await new_trail(members, app_sessions, 3)
    first = await sign_head(app_sessions, trail, signing_key(app))
    if case in ("a later entry rewritten", "the chain rebuilt from genesis"):
        await append(app_sessions, trail.actor, 2, start=4)
    if case == "a later entry rewritten":
        await rewrite(superuser_engine, trail.firm_id, [4], relink=False)
    elif case == "the chain rebuilt from genesis":
        await rewrite(superuser_engine, trail.firm_id, [2], relink=True)
    elif case == "the signed entry rewritten":
        await rewrite(superuser_engine, trail.firm_id, [3], relink=False)
    else:
        await tamper(
            superuser_engine,
            ["delete from audit_log where firm_id = :firm and seq = 3"],
            {"firm": trail.firm_id},
        )
    body = await gql(client, CHECKPOINT, None, trail.admin)
    assert codes(body) == ["AUDIT_CHAIN_BROKEN"], body
    assert body["errors"][0]["message"].endswith(reason), body
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        signed = (await session.execute(select(AuditCheckpoint.id))).scalars().all()
    assert signed == [first.id]


async def test_a_chain_extending_its_last_checkpoint_is_signed_after_checking_only_the_rest(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """What the last checkpoint signed is taken as signed: an entry before it rewritten is for
    verification to find (it does, naming that checkpoint), not a reason to stop signing."""
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, signing_key(app))
    await append(app_sessions, trail.actor, 2, start=4)
    assert (await sign_head(app_sessions, trail, signing_key(app))).seq == 5
    await rewrite(superuser_engine, trail.firm_id, [1], relink=False)
    await append(app_sessions, trail.actor, 1, start=6)
    assert (await sign_head(app_sessions, trail, signing_key(app))).seq == 6
    result = await verify_graphql(client, trail.admin)
    assert (result["ok"], result["failure"]["seq"]) == (False, 2)


@pytest.mark.parametrize("seq", [5, 10**12], ids=["at-the-head", "beyond-the-head"])
async def test_a_checkpoint_row_without_our_signature_neither_steers_nor_stops_signing(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    seq: int,
) -> None:
    """The last checkpoint is trusted only if we signed it: a row added with the table's
    rights, naming our key (at the head, or far beyond it) but not signed by it, is not where
    signing resumes from, and does not stop it either (refused, it would have left every later
    entry unanchored for good, as no role may delete the row). Verification still names it."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 2, start=4)
    async with superuser_engine.begin() as conn:
        head = (
            await conn.execute(
                text("select hash from audit_log where firm_id = :firm and seq = 5"),
                {"firm": trail.firm_id},
            )
        ).scalar_one()
        forged = uuid.uuid4()
        await conn.execute(
            text(
                "insert into audit_checkpoints "
                "(id, firm_id, seq, head_hash, signed_at, key_id, signature, created_by) "
                "values (:id, :firm, :seq, :head, now(), :key_id, :signature, 'system')"
            ),
            {
                "id": forged,
                "firm": trail.firm_id,
                "seq": seq,
                "head": head,
                "key_id": key.key_id,
                "signature": bytes(64),
            },
        )
    if seq == 5:  # it holds our key's place at seq 5: said so, and no more than that
        with pytest.raises(AuditChainBroken, match=f"Checkpoint {forged} at seq 5 names our key"):
            await sign_head(app_sessions, trail, key)
    else:
        assert (await sign_head(app_sessions, trail, key)).seq == 5
    # An admin's checkpoint: at seq 6 (its own entry) past the squatter; the head already
    # signed otherwise.
    body = await gql(client, CHECKPOINT, None, trail.admin)
    assert "errors" not in body, body
    signed = 6 if seq == 5 else 5
    assert body["data"]["createAuditCheckpoint"]["checkpoint"]["seq"] == signed
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        last = await checkpoints.newest(session, trail.firm_id, key)
    assert last is not None
    assert (last.seq, last.id) != (seq, forged)
    result = await verify_graphql(client, trail.admin)
    assert result["ok"] is False, result
    assert result["failure"]["reason"] == (
        f"checkpoint {forged} at seq 5 does not carry a valid signature"
        if seq == 5
        else f"the chain ends at seq 5 but checkpoint {forged} signed seq {seq}"
    )


async def _lock_is_free(superuser_engine: AsyncEngine, firm_id: uuid.UUID) -> bool:
    """Whether the firm's chain lock could be taken now (by another connection, let go at once)."""
    async with superuser_engine.connect() as conn:
        free = await conn.scalar(
            text("select pg_try_advisory_xact_lock(:key)"), {"key": chain._lock_key(firm_id)}
        )
        await conn.rollback()
        return bool(free)


async def test_signing_checks_the_chain_before_the_lock_and_only_what_came_meanwhile_under_it(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The firm's appends do not wait while the entries since its last checkpoint are checked:
    one lands during that check, and is itself checked, under the lock, before it is signed."""
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, signing_key(app))
    await append(app_sessions, trail.actor, 2, start=4)
    real_verify = chain.verify
    calls: list[tuple[int, bool]] = []

    async def watched(session: AsyncSession, firm_id: uuid.UUID, **kw: Any) -> Any:
        free = await _lock_is_free(superuser_engine, firm_id)
        calls.append((kw["since"].seq, free))
        result = await real_verify(session, firm_id, **kw)
        if len(calls) == 1 and free:
            await append(app_sessions, trail.actor, 1, start=6)  # an append meanwhile
        return result

    monkeypatch.setattr(chain, "verify", watched)
    signed = await sign_head(app_sessions, trail, signing_key(app))
    assert calls == [(3, True), (5, False)]
    assert signed.seq == 6


@pytest.mark.parametrize(
    ("meanwhile", "reason"),
    [
        (
            "an entry appended and altered",
            "The audit trail does not extend its checkpoint at seq 3: "
            "seq 6: stored fields differ from the entry's canonical bytes.",
        ),
        ("the checked entries rebuilt", "The entry at seq 5 is not the one that was just checked."),
        ("the checked entries cut off", "The audit trail ends at seq 4, before seq 5."),
        (
            "the checkpoint removed",
            "The checkpoint at seq 3 was removed while the chain was being checked.",
        ),
    ],
)
async def test_a_chain_changed_while_it_was_checked_is_caught_under_the_lock(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
    reason: str,
) -> None:
    """Between the check made without the lock and the signing under it, whatever changed is
    caught: nothing is signed."""
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, signing_key(app))
    await append(app_sessions, trail.actor, 2, start=4)
    real_verify = chain.verify
    meddled: list[bool] = []
    firm = {"firm": trail.firm_id}

    async def meddle(session: AsyncSession, firm_id: uuid.UUID, **kw: Any) -> Any:
        result = await real_verify(session, firm_id, **kw)
        if meddled or not await _lock_is_free(superuser_engine, firm_id):
            return result
        meddled.append(True)
        if meanwhile == "an entry appended and altered":
            await append(app_sessions, trail.actor, 1, start=6)
            update = "update audit_log set details = '{}' where firm_id = :firm and seq = 6"
            await tamper(superuser_engine, [update], firm)
        elif meanwhile == "the checked entries rebuilt":
            await rewrite(superuser_engine, trail.firm_id, [4], relink=True)
        elif meanwhile == "the checked entries cut off":
            await tamper(
                superuser_engine, ["delete from audit_log where firm_id = :firm and seq = 5"], firm
            )
        else:
            delete = "delete from audit_checkpoints where firm_id = :firm"
            await tamper(superuser_engine, [delete], firm, table="audit_checkpoints")
        return result

    monkeypatch.setattr(chain, "verify", meddle)
    body = await gql(client, CHECKPOINT, None, trail.admin)
    assert meddled
    assert codes(body) == ["AUDIT_CHAIN_BROKEN"], body
    assert body["errors"][0]["message"] == reason


async def test_where_signing_resumes_is_found_past_pages_of_rows_we_did_not_sign(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """Forty-five rows naming our key, unsigned, above our checkpoint (more than two pages of
    the search, all of one moment): the search reads past them to ours, and the head is
    signed."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    ours = await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 2, start=4)
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "insert into audit_checkpoints "
                "(id, firm_id, seq, head_hash, signed_at, key_id, signature, created_by) "
                "select gen_random_uuid(), :firm, 1000 + n, sha256(n::text::bytea), "
                "'2030-01-01T00:00:00Z', :key_id, :signature, 'system' "
                "from generate_series(0, 44) n"
            ),
            {"firm": trail.firm_id, "key_id": key.key_id, "signature": bytes(64)},
        )
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        found = await checkpoints.newest(session, trail.firm_id, key)
    assert found is not None
    assert found.id == ours.id
    assert (await sign_head(app_sessions, trail, key)).seq == 5


@pytest.mark.parametrize("signed_before", [False, True], ids=["first", "after-ours"])
async def test_a_row_we_did_not_sign_naming_another_hash_is_not_held_against_the_chain(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    signed_before: bool,
) -> None:
    """An unsigned row naming our key and another hash at seq 4, among the entries signing
    checks (from the first entry, or on from our checkpoint): it vouches for nothing, so it
    does not stop the head being signed."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    if signed_before:
        await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 2, start=4)
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "insert into audit_checkpoints "
                "(id, firm_id, seq, head_hash, signed_at, key_id, signature, created_by) "
                "values (gen_random_uuid(), :firm, 4, sha256('other'::bytea), now(), :key_id, "
                ":signature, 'system')"
            ),
            {"firm": trail.firm_id, "key_id": key.key_id, "signature": bytes(64)},
        )
    assert (await sign_head(app_sessions, trail, key)).seq == 5
