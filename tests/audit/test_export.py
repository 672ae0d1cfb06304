"""Exports: a long trail verifies offline and any single flipped byte breaks it; a dated export
verifies on its own; the CLI exports what the API exports and verifies a firm's chain."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.audit.actions import Action
from app.audit.signing import SigningKey
from app.cli import main
from app.db.tenant import tenant_transaction, transaction
from tests.audit.test_tamper import (
    CHECKPOINT,
    append,
    export,
    new_trail,
    run_verifier,
    sign_head,
    signing_key,
    tamper,
    verify_graphql,
    verify_offline,
)
from tests.conftest import Database
from tests.factories import Members, gql

LONG = 10_000

ENTRIES = """query($first: Int!) { auditEntries(first: $first) {
  edges { node { seq occurredAt } } } }"""
EXPORT = """query($from: DateTime, $to: DateTime) { exportAuditLog(from: $from, to: $to) {
  keyId jsonl } }"""


# --- 8. ten thousand entries, and one flipped byte anywhere ----------------------------------


def _flip_positions(data: bytes, rng: random.Random) -> list[tuple[str, int]]:
    """Byte positions spread over every kind of line: the header, entries (first, last and
    throughout) and the checkpoints."""
    header_end = data.index(b"\n") + 1
    checkpoints_start = data.index(b'"type":"checkpoint"')
    checkpoints_start = data.rindex(b"\n", 0, checkpoints_start) + 1
    entries = (header_end, checkpoints_start)
    positions = [("header", p) for p in rng.sample(range(header_end), 6)]
    positions += [("entry", entries[0] + 5), ("entry", entries[1] - 5)]
    positions += [("entry", p) for p in sorted(rng.sample(range(*entries), 12))]
    positions += [("checkpoint", p) for p in rng.sample(range(checkpoints_start, len(data)), 8)]
    return positions


async def test_ten_thousand_entries_verify_and_any_flipped_byte_breaks_the_export(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, LONG // 2)
    await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, LONG // 2, start=LONG // 2 + 1)
    body = await gql(client, CHECKPOINT, None, trail.admin)
    assert body["data"]["createAuditCheckpoint"]["checkpoint"]["seq"] == LONG, body

    result = await verify_graphql(client, trail.admin)
    assert result == {
        "ok": True,
        "entriesChecked": LONG,
        "headSeq": LONG,
        "checkpointsChecked": 2,
        "failure": None,
    }

    lines = await export(app_sessions, trail.firm_id, key)
    assert len(lines) == 1 + LONG + 2
    code, out = await verify_offline(tmp_path, lines, key)
    assert code == 0, out
    head = json.loads(lines[LONG])["hash"]
    assert out == (
        f"OK: firm {trail.firm_id}: entries 1..{LONG} ({LONG}) intact, "
        f"2 signed checkpoint(s) verified, head {head}\n"
    )

    data = "".join(lines).encode()
    key_path = tmp_path / "key.pem"
    key_path.write_text(key.public_pem())
    positions = _flip_positions(data, random.Random(20260527))  # noqa: S311 (reproducible)
    assert len(positions) >= 20
    limit = asyncio.Semaphore(os.cpu_count() or 2)

    async def flipped(n: int, position: int) -> tuple[int, str]:
        changed = bytearray(data)
        changed[position] ^= 0x01
        assert changed != data
        path = tmp_path / f"flipped-{n}.jsonl"
        path.write_bytes(changed)
        async with limit:
            result = await run_verifier(path, key_path)
        path.unlink()
        return result

    outcomes = await asyncio.gather(
        *(flipped(n, position) for n, (_, position) in enumerate(positions))
    )
    accepted = [
        (kind, position, data[position : position + 1], code, out.strip())
        for (kind, position), (code, out) in zip(positions, outcomes, strict=True)
        if code != 1 or not out.startswith("BROKEN: line ")
    ]
    assert accepted == []


# --- 9. a dated export -----------------------------------------------------------------------


async def test_a_dated_export_of_a_middle_range_verifies_from_its_first_entry(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 4)
    inside = await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 4, start=5)
    outside = await sign_head(app_sessions, trail, key)
    assert (inside.seq, outside.seq) == (4, 8)

    body = await gql(client, ENTRIES, {"first": 10}, trail.admin)
    occurred = {
        e["node"]["seq"]: e["node"]["occurredAt"] for e in body["data"]["auditEntries"]["edges"]
    }
    assert sorted(occurred) == list(range(1, 9))
    window = {"from": occurred[3], "to": occurred[7]}  # seqs 3..6: `to` is exclusive
    body = await gql(client, EXPORT, window, trail.admin)
    assert "errors" not in body, body
    jsonl = body["data"]["exportAuditLog"]["jsonl"]
    lines = jsonl.splitlines(keepends=True)
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds == ["header", "entry", "entry", "entry", "entry", "checkpoint"]
    assert [json.loads(line)["seq"] for line in lines[1:]] == [3, 4, 5, 6, 4]

    # The same range through export_lines.
    start, end = (datetime.fromisoformat(window[k]) for k in ("from", "to"))
    direct = await export(app_sessions, trail.firm_id, key, start, end)
    assert [_without_exported_at(line) for line in direct] == [
        _without_exported_at(line) for line in lines
    ]

    code, out = await verify_offline(tmp_path, lines, key)
    head = json.loads(lines[4])["hash"]
    assert (code, out) == (
        0,
        f"OK: firm {trail.firm_id}: entries 3..6 (4) intact, "
        f"1 signed checkpoint(s) verified, head {head}\n",
    )

    # A dated export is anchored at its first entry: cutting that entry shows as a gap.
    code, out = await verify_offline(tmp_path, [lines[0], *lines[2:]], key, "cut")
    assert code == 0, out  # seq 4.. on its own is a valid range
    code, out = await verify_offline(tmp_path, [lines[0], lines[1], *lines[3:]], key, "gap")
    assert (code, out) == (1, "BROKEN: line 3: seq 5 follows seq 3 (entry missing or moved)\n")


# --- 10. the CLI -----------------------------------------------------------------------------


def _without_exported_at(line: str) -> str:
    item = json.loads(line)
    item.pop("exported_at", None)
    return json.dumps(item, sort_keys=True)


def _cli_env(
    monkeypatch: pytest.MonkeyPatch, database: Database, key: SigningKey, tmp_path: Path
) -> None:
    private = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    monkeypatch.setenv("COVERPROOF_AUDIT_SIGNING_KEY", private)
    monkeypatch.setenv("COVERPROOF_DATA_DIR", str(tmp_path / "cli-data"))


async def _cli(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def test_the_cli_exports_what_the_api_exports_and_verifies_a_firm(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 5)
    await sign_head(app_sessions, trail, key)
    await append(app_sessions, trail.actor, 2, start=6)
    _cli_env(monkeypatch, database, key, tmp_path)
    capsys.readouterr()

    assert await _cli(["audit", "export", "--firm", str(trail.firm_id)]) == 0
    printed = capsys.readouterr().out.splitlines(keepends=True)
    expected = await export(owner_sessions, trail.firm_id, key)
    assert len(printed) == len(expected) == 1 + 7 + 1
    assert [_without_exported_at(line) for line in printed] == [
        _without_exported_at(line) for line in expected
    ]
    assert json.loads(printed[0])["key_id"] == key.key_id
    code, out = await verify_offline(tmp_path, printed, key, "cli")
    assert code == 0, out
    assert out.startswith(f"OK: firm {trail.firm_id}: entries 1..7 (7) intact, 1 signed ")

    assert await _cli(["audit", "public-key"]) == 0
    assert capsys.readouterr().out == key.public_pem()

    assert await _cli(["audit", "verify", "--firm", str(trail.firm_id)]) == 0
    assert capsys.readouterr().out == "ok: 1 chain(s), 7 entries verified\n"

    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 6"],
        {"firm": trail.firm_id},
    )
    assert await _cli(["audit", "verify", "--firm", str(trail.firm_id)]) == 1
    assert capsys.readouterr().out == (
        f"BROKEN firm {trail.firm_id} at seq 6: "
        "seq 7 found where 6 was expected (entry missing or moved)\n"
    )


async def test_the_cli_refuses_a_checkpoint_with_a_forged_signature(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`coverproof audit verify` runs the same checks as verifyAuditChain (docs/audit.md),
    signatures included: it has the signing key, so it knows the public key."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    checkpoint = await sign_head(app_sessions, trail, key)
    _cli_env(monkeypatch, database, key, tmp_path)
    capsys.readouterr()
    assert await _cli(["audit", "verify", "--firm", str(trail.firm_id)]) == 0
    assert capsys.readouterr().out == "ok: 1 chain(s), 3 entries verified\n"
    await tamper(
        superuser_engine,
        [
            "update audit_checkpoints set signature = set_byte(signature, 0, "
            "get_byte(signature, 0) # 1) where firm_id = :firm"
        ],
        {"firm": trail.firm_id},
        table="audit_checkpoints",
    )
    assert await _cli(["audit", "verify", "--firm", str(trail.firm_id)]) == 1
    assert capsys.readouterr().out == (
        f"BROKEN firm {trail.firm_id} at seq 3: "
        f"checkpoint {checkpoint.id} at seq 3 does not carry a valid signature\n"
    )


async def test_the_cli_verifies_the_platform_chain_with_all(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`audit verify --firm ID --all` verifies that firm's chain and the platform chain."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 2)
    async with transaction(app_sessions) as session:
        await chain.record_platform(
            session, Action.SIGN_UP_DUPLICATE, details={"email_sha256": uuid.uuid4().hex}
        )
    async with tenant_transaction(owner_sessions, None) as session:
        (platform,) = (
            await session.execute(text("select count(*) from audit_log where firm_id is null"))
        ).one()
    assert platform >= 1
    _cli_env(monkeypatch, database, key, tmp_path)
    capsys.readouterr()
    assert await _cli(["audit", "verify", "--firm", str(trail.firm_id), "--all"]) == 0
    assert capsys.readouterr().out == f"ok: 2 chain(s), {2 + platform} entries verified\n"
