"""Exports: a long trail verifies offline and any single flipped byte breaks it; a dated export
verifies on its own; the CLI exports what the API exports and verifies a firm's chain."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import canonical, chain
from app.audit.actions import Action
from app.audit.export import export_lines
from app.audit.signing import SigningKey
from app.auth.actor import Actor
from app.cli import main
from app.db.models import AuditEntry
from app.db.tenant import tenant_transaction, transaction
from tests.audit.test_chain import written_at
from tests.audit.test_tamper import (
    append,
    export,
    new_trail,
    resign,
    run_verifier,
    sign_head,
    signing_key,
    tamper,
    verify_graphql,
    verify_offline,
)
from tests.conftest import Database, private_pem
from tests.factories import Members, gql

LONG = 10_000

ENTRIES = """query($first: Int!) { auditEntries(first: $first) {
  edges { node { seq occurredAt } } } }"""
EXPORT = """query($from: DateTime, $to: DateTime) { exportAuditLog(from: $from, to: $to) {
  keyId jsonl } }"""


# --- 8. ten thousand entries, and one flipped byte anywhere ----------------------------------


async def append_bulk(
    sessions: async_sessionmaker[AsyncSession], actor: Actor, count: int, batch: int = 500
) -> None:
    """Append ``count`` entries exactly as ``chain.record`` would (the firm's lock, then the
    next seq and hash after the head), but ``batch`` rows per INSERT: the database's append
    trigger still checks every row against the head."""
    for done in range(0, count, batch):
        async with tenant_transaction(sessions, actor.firm_id, actor.id) as session:
            await chain.lock_firm(session, actor.firm_id)
            head = (
                await session.execute(
                    select(AuditEntry.seq, AuditEntry.hash)
                    .where(AuditEntry.firm_id == actor.firm_id)
                    .order_by(AuditEntry.seq.desc())
                    .limit(1)
                )
            ).one_or_none()
            seq, prev_hash = (head.seq, head.hash) if head else (0, canonical.GENESIS)
            rows = []
            for _ in range(min(batch, count - done)):
                seq += 1
                fields: dict[str, Any] = {
                    "seq": seq,
                    "occurred_at": datetime.now(UTC),
                    "actor_type": actor.type.value,
                    "actor_id": str(actor.id),
                    "action": Action.FIRM_UPDATED.value,
                    "target_type": "firm",
                    "target_id": str(actor.firm_id),
                    "details": {"changes": {"name": {"from": f"N{seq - 1}", "to": f"N{seq}"}}},
                    "ip": actor.ip,
                }
                body = canonical.encode(canonical.entry_body(firm_id=str(actor.firm_id), **fields))
                entry_hash = canonical.chain_hash(prev_hash, body)
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "firm_id": actor.firm_id,
                        **fields,
                        "prev_hash": prev_hash,
                        "hash": entry_hash,
                        "canonical": body,
                    }
                )
                prev_hash = entry_hash
            await session.execute(insert(AuditEntry), rows)


def _value_positions(data: bytes, start: int) -> list[int]:
    """The first byte of every field's value in the line that begins at ``start``."""
    end = data.index(b"\n", start)
    line = data[start:end]
    positions = []
    for name in json.loads(line):
        at = line.index(b'"' + name.encode() + b'":') + len(name) + 3
        positions.append(start + at + (line[at : at + 1] == b'"'))
    return positions


def _flip_positions(data: bytes, rng: random.Random) -> list[tuple[str, int]]:
    """Byte positions spread over every kind of line: random ones in the header, throughout the
    entries (and the first and last entry), in the checkpoints and in the signed trailer (and its
    final newline); and the first byte of every field's value in the header, in the first
    checkpoint and in the trailer."""
    header_end = data.index(b"\n") + 1
    checkpoints_start = data.rindex(b"\n", 0, data.index(b'"type":"checkpoint"')) + 1
    trailer_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    entries = (header_end, checkpoints_start)
    positions = [("header", p) for p in rng.sample(range(header_end), 4)]
    positions += [("entry", entries[0] + 5), ("entry", entries[1] - 5)]
    positions += [("entry", p) for p in sorted(rng.sample(range(*entries), 10))]
    positions += [("checkpoint", p) for p in rng.sample(range(checkpoints_start, trailer_start), 6)]
    positions += [("trailer", p) for p in rng.sample(range(trailer_start, len(data)), 6)]
    positions += [("trailer", len(data) - 1)]
    positions += [("header field", p) for p in _value_positions(data, 0)]
    positions += [("checkpoint field", p) for p in _value_positions(data, checkpoints_start)]
    positions += [("trailer field", p) for p in _value_positions(data, trailer_start)]
    return positions


def _refusal_expected(data: bytes, kind: str, position: int, out: str) -> bool:
    """Whether ``out`` is the refusal a flip at ``position`` must get: a flip in the trailer is
    refused at the trailer (the last line), and a flip before it that leaves the lines as they
    were is refused there too, because the signature no longer covers the bytes."""
    last = data.count(b"\n")
    if kind.startswith("trailer"):
        return out.startswith(f"BROKEN: line {last}: ")
    if data[position] == ord("\n"):  # two lines joined: the trailer is no longer line ``last``
        return out.startswith("BROKEN: line ")
    return out == f"BROKEN: line {last}: the signature does not cover these bytes (file changed)\n"


def _around(data: bytes, position: int) -> str:
    """The flipped byte in its context, as ...before[byte]after..."""
    before = data[max(0, position - 24) : position].decode(errors="replace")
    after = data[position + 1 : position + 8].decode(errors="replace")
    return f"...{before}[{chr(data[position])}->{chr(data[position] ^ 1)}]{after}..."


async def test_ten_thousand_entries_verify_and_any_flipped_byte_breaks_the_export(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 0)
    await append_bulk(app_sessions, trail.actor, LONG // 2)
    await sign_head(app_sessions, trail, key)
    await append_bulk(app_sessions, trail.actor, LONG // 2)
    assert (await sign_head(app_sessions, trail, key)).seq == LONG

    result = await verify_graphql(client, trail.admin)
    assert result == {
        "ok": True,
        "entriesChecked": LONG,
        "headSeq": LONG,
        "checkpointsChecked": 2,
        "failure": None,
    }

    lines = await export(app_sessions, trail.firm_id, key)
    assert len(lines) == 1 + LONG + 2 + 1  # header, entries, 2 checkpoints, the trailer
    # The trailer signs the SHA-256 of every byte before it with the platform key.
    trailer = json.loads(lines[-1])
    digest = hashlib.sha256("".join(lines[:-1]).encode()).digest()
    assert trailer == {
        "type": "signature",
        "sha256": digest.hex(),
        "key_id": key.key_id,
        "signature": trailer["signature"],
    }
    key.public.verify(base64.b64decode(trailer["signature"], validate=True), digest)
    code, out = await verify_offline(tmp_path, lines, key)
    assert code == 0, out
    head, exported = json.loads(lines[LONG])["hash"], json.loads(lines[0])["exported_at"]
    assert out == (
        f"OK: firm {trail.firm_id}: full export, exported {exported}: entries 1..{LONG} "
        f"({LONG}) of {LONG} intact, 2 signed checkpoint(s) verified, head {head}, "
        f"signed by key {key.key_id}\n"
    )

    data = "".join(lines).encode()
    key_path = tmp_path / "key.pem"
    key_path.write_text(key.public_pem())
    positions = _flip_positions(data, random.Random(20260527))  # noqa: S311 (reproducible)
    # random ones (4 header, 12 entry, 6 checkpoint, 7 trailer); every field of the header (11),
    # of a checkpoint (8) and of the trailer (4)
    assert len(positions) == 29 + 11 + 8 + 4
    assert {kind for kind, _ in positions} == {
        "header",
        "entry",
        "checkpoint",
        "trailer",
        "header field",
        "checkpoint field",
        "trailer field",
    }
    limit = asyncio.Semaphore(os.cpu_count() or 2)

    async def flipped(n: int, position: int) -> tuple[int, str]:
        async with limit:  # a few files on disk at a time
            changed = bytearray(data)
            changed[position] ^= 0x01
            assert changed != data
            path = tmp_path / f"flipped-{n}.jsonl"
            path.write_bytes(changed)
            result = await run_verifier(path, key_path)
            path.unlink()
            return result

    outcomes = await asyncio.gather(
        *(flipped(n, position) for n, (_, position) in enumerate(positions))
    )
    # The flipped files are not re-signed: whatever byte changed, the verifier must refuse it.
    accepted = [
        f"{kind} byte {position} ({_around(data, position)}): exit {code}: {out.strip()[:80]}"
        for (kind, position), (code, out) in zip(positions, outcomes, strict=True)
        if code != 1 or not _refusal_expected(data, kind, position, out)
    ]
    assert not accepted, "flipped bytes the verifier did not refuse:\n" + "\n".join(accepted)


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
    # The same range through export_lines, first: the API's export is recorded after it, which
    # moves the head its header names.
    start, end = (datetime.fromisoformat(window[k]) for k in ("from", "to"))
    direct = await export(app_sessions, trail.firm_id, key, start, end)
    body = await gql(client, EXPORT, window, trail.admin)
    assert "errors" not in body, body
    jsonl = body["data"]["exportAuditLog"]["jsonl"]
    lines = jsonl.splitlines(keepends=True)
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds == ["header", "entry", "entry", "entry", "entry", "checkpoint", "signature"]
    assert [json.loads(line)["seq"] for line in lines[1:-1]] == [3, 4, 5, 6, 4]

    # The two agree (the trailers differ only because exported_at does).
    assert len(direct) == len(lines)
    assert [_without_exported_at(line) for line in direct[:-1]] == [
        _without_exported_at(line) for line in lines[:-1]
    ]
    assert json.loads(direct[-1])["key_id"] == json.loads(lines[-1])["key_id"] == key.key_id
    code, out = await verify_offline(tmp_path, direct, key, "direct")
    assert code == 0, out

    code, out = await verify_offline(tmp_path, lines, key)
    head, header = json.loads(lines[4])["hash"], json.loads(lines[0])
    assert (header["from"], header["to"]) == (
        canonical.timestamp(start),
        canonical.timestamp(end),
    )
    assert (header["head_seq"], header["head_hash"]) == (8, outside.head_hash.hex())
    assert (code, out) == (
        0,
        f"OK: firm {trail.firm_id}: dated export from {header['from']} to {header['to']}, "
        f"exported {header['exported_at']}: entries 3..6 (4) of 8 intact, "
        f"1 signed checkpoint(s) verified, head {head}, signed by key {key.key_id}\n",
    )

    # Anchored at its first entry, whatever its seq; a gap inside the range is still caught.
    # (Re-signed, as only the platform could, so the chain checks are what is exercised.)
    later = resign([lines[0], *lines[2:]], key)
    code, out = await verify_offline(tmp_path, later, key, "later-start")
    assert code == 0, out
    assert ": entries 4..6 (3) of 8 intact, " in out
    gap = [lines[0], lines[1], *lines[3:]]
    code, out = await verify_offline(tmp_path, resign(gap, key), key, "gap")
    assert (code, out) == (1, "BROKEN: line 3: seq 5 follows seq 3 (entry missing or moved)\n")
    # Not re-signed, the same edit is refused by the trailer before any chain check.
    code, out = await verify_offline(tmp_path, gap, key, "gap-unsigned")
    assert (code, out) == (
        1,
        f"BROKEN: line {len(gap)}: the signature does not cover these bytes (file changed)\n",
    )


async def test_a_checkpoint_signed_while_an_export_streams_is_left_out(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """The export reads the checkpoints, then the head, then the entries up to it. Read last,
    a checkpoint signed after the last entry was read would sit beyond the entries and read
    offline as a cut-off tail."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, trail, key)
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        stream = export_lines(session, trail.firm_id, key)
        lines = [await anext(stream) for _ in range(4)]  # the header and the three entries
        await append(app_sessions, trail.actor, 1, start=4)
        late = await sign_head(app_sessions, trail, key)
        lines += [line async for line in stream]
    assert late.seq == 4
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds == ["header", "entry", "entry", "entry", "checkpoint", "signature"]
    code, out = await verify_offline(tmp_path, lines, key)
    assert code == 0, out
    assert ": entries 1..3 (3) of 3 intact, 1 signed checkpoint(s) verified, " in out


async def test_a_dated_export_holds_every_entry_between_its_first_and_last_by_seq(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """Times need not rise with seq (one app server's clock may run behind another's). A dated
    export holds a run of seqs, so an entry whose time is out of order is not left out, which
    would read offline as a deleted entry."""
    key = signing_key(app)
    owner = await members.create()
    base = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    moments = [base + timedelta(minutes=m) for m in (0, 2, 1, 3)]  # seq 3's server behind
    await written_at(app_sessions, owner.firm_id, moments)
    window = (base + timedelta(minutes=1, seconds=30), base + timedelta(minutes=3, seconds=30))
    lines = await export(app_sessions, owner.firm_id, key, *window)
    assert [json.loads(line)["seq"] for line in lines[1:-1]] == [2, 3, 4]
    code, out = await verify_offline(tmp_path, lines, key)
    assert code == 0, out
    assert ": entries 2..4 (3) of 4 intact, 0 signed checkpoint(s) verified, " in out

    # Nothing in the window: the export says so, and how long the chain is.
    lines = await export(app_sessions, owner.firm_id, key, base + timedelta(minutes=5))
    code, out = await verify_offline(tmp_path, lines, key, "empty")
    header = json.loads(lines[0])
    assert (code, out) == (
        0,
        f"OK: firm {owner.firm_id}: dated export from {header['from']} to now, exported "
        f"{header['exported_at']}: no entries of 4, signed by key {key.key_id}\n",
    )


# --- 10. the CLI -----------------------------------------------------------------------------


def _without_exported_at(line: str) -> str:
    item = json.loads(line)
    item.pop("exported_at", None)
    return json.dumps(item, sort_keys=True)


def _cli_env(
    monkeypatch: pytest.MonkeyPatch, database: Database, key: SigningKey, tmp_path: Path
) -> None:
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    monkeypatch.setenv("COVERPROOF_AUDIT_SIGNING_KEY", private_pem(key.private))
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
    # Another firm's signed trail: the CLI's owner role reads past RLS, so only its own
    # queries' firm filters keep this out of the export.
    other = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, other, key)
    _cli_env(monkeypatch, database, key, tmp_path)
    capsys.readouterr()

    assert await _cli(["audit", "export", "--firm", str(trail.firm_id)]) == 0
    printed = capsys.readouterr().out.splitlines(keepends=True)
    assert str(other.firm_id) not in "".join(printed)
    expected = await export(owner_sessions, trail.firm_id, key)
    assert len(printed) == len(expected) == 1 + 7 + 1 + 1  # header, entries, checkpoint, trailer
    # The same lines but the trailer, whose digest covers the header's own exported_at.
    assert [_without_exported_at(line) for line in printed[:-1]] == [
        _without_exported_at(line) for line in expected[:-1]
    ]
    assert json.loads(printed[0])["key_id"] == key.key_id
    assert {k: v for k, v in json.loads(printed[-1]).items() if k in ("type", "key_id")} == {
        "type": "signature",
        "key_id": key.key_id,
    }
    code, out = await verify_offline(tmp_path, printed, key, "cli")
    assert code == 0, out
    assert out.startswith(f"OK: firm {trail.firm_id}: full export, exported ")
    assert ": entries 1..7 (7) of 7 intact, 1 signed " in out
    assert out.endswith(f", signed by key {key.key_id}\n")

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
    """`audit verify --firm ID --all` verifies that firm's chain and the platform chain, which
    no checkpoint signs, and says so."""
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
    assert capsys.readouterr().out == (
        f"UNSIGNED the platform chain ({platform} entries): no checkpoint signs it, so it links "
        "up, but so would all of it rewritten from its first entry\n"
        f"ok: 2 chain(s), {2 + platform} entries verified\n"
    )


async def test_the_cli_refuses_a_firm_that_does_not_exist_and_names_every_broken_chain(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A mistyped firm id is an error (exit 2), never "ok: 0 chain(s)" or an empty export; and
    verifying several chains names each broken one, not only the first."""
    key = signing_key(app)
    _cli_env(monkeypatch, database, key, tmp_path)
    nobody = str(uuid.uuid4())
    for command in (["verify", "--firm"], ["export", "--firm"], ["reanchor", "--firm"]):
        capsys.readouterr()
        assert await _cli(["audit", *command, nobody]) == 2
        printed = capsys.readouterr()
        assert (printed.out, printed.err) == ("", f"no firm {nobody}\n")

    trails = [await new_trail(members, app_sessions, 3) for _ in range(2)]
    for trail in trails:
        await tamper(
            superuser_engine,
            ["delete from audit_log where firm_id = :firm and seq = 2"],
            {"firm": trail.firm_id},
        )
    capsys.readouterr()
    assert await _cli(["audit", "verify"]) == 1
    broken = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BROKEN")]
    for trail in trails:
        assert f"BROKEN firm {trail.firm_id} at seq 2: " in "\n".join(broken)


@pytest.mark.parametrize("command", ["verify", "export", "reanchor"])
def test_the_cli_refuses_a_firm_id_that_is_no_id_as_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the id escaped as a traceback with exit code 1, which `audit verify` gives
    for a broken chain: a monitoring job would have reported tampering."""
    with pytest.raises(SystemExit) as refused:
        main(["audit", command, "--firm", "not-a-firm-id"])
    assert refused.value.code == 2
    assert "--firm: not a firm id (a UUID)" in capsys.readouterr().err


async def test_the_cli_verifies_a_chain_whose_firm_a_policy_hides_from_it(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The CLI reads as the owner, who may add a policy on ``firms`` (not sealed) that hides a
    firm from itself: that firm's broken chain is still verified, and named, not left out of an
    "ok" (the chains are listed from the log as well)."""
    key = signing_key(app)
    _cli_env(monkeypatch, database, key, tmp_path)
    trail = await new_trail(members, app_sessions, 3)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 2"],
        {"firm": trail.firm_id},
    )
    hide = (
        "create policy hidden on firms as restrictive for select to coverproof_owner "
        f"using (id <> '{trail.firm_id}')"
    )
    async with superuser_engine.begin() as conn:
        await conn.execute(text(hide))
    try:
        capsys.readouterr()
        assert await _cli(["audit", "verify"]) == 1
        assert f"BROKEN firm {trail.firm_id} at seq 2: " in capsys.readouterr().out
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(text("drop policy hidden on firms"))


async def test_the_cli_verifies_with_the_published_keys_alone(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`audit verify --keys FILE` checks signatures against the published public keys, with no
    signing key on the host (none is loaded, nor one made up): a checkpoint of a key not in the
    file is named, as by the server."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    checkpoint = await sign_head(app_sessions, trail, key)
    _cli_env(monkeypatch, database, key, tmp_path)
    monkeypatch.delenv("COVERPROOF_AUDIT_SIGNING_KEY")
    published, other = tmp_path / "keys.pem", tmp_path / "other.pem"
    published.write_text(key.public_pem())
    other.write_text(SigningKey(Ed25519PrivateKey.generate()).public_pem())
    capsys.readouterr()
    verify = ["audit", "verify", "--firm", str(trail.firm_id), "--keys"]
    assert await _cli([*verify, str(published)]) == 0
    assert capsys.readouterr().out == "ok: 1 chain(s), 3 entries verified\n"
    assert await _cli([*verify, str(other)]) == 1
    assert capsys.readouterr().out == (
        f"BROKEN firm {trail.firm_id} at seq 3: "
        f"checkpoint {checkpoint.id} at seq 3 names key {key.key_id}, not one of ours\n"
    )
    # Revoked since, our key is left out of the published file: named with --revoked, its
    # checkpoint vouches for nothing (and is not another's).
    assert await _cli([*verify, str(other), "--revoked", key.key_id]) == 0
    assert capsys.readouterr().out == "ok: 1 chain(s), 3 entries verified\n"
    assert await _cli([*verify, str(tmp_path / "missing.pem")]) == 2
    assert "--keys:" in capsys.readouterr().err
    assert not (tmp_path / "cli-data" / "audit_signing_key.pem").exists()
