"""The offline verifier (``tools/verify_audit.py``) beyond the chain itself: each of its format
checks, several trusted keys after a rotation, an export checked against an earlier one kept,
and version 2's head and dates. Edited exports are re-signed, as only the platform could, so
that the check under test, not the trailer's signature, is what refuses them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import canonical
from app.audit.signing import SigningKey
from app.db.models import AuditEntry
from app.db.tenant import tenant_transaction
from tests.audit.test_tamper import (
    VERIFIER,
    Trail,
    append,
    export,
    new_trail,
    resign,
    rewrite,
    run_verifier,
    sign_head,
    signing_key,
    tamper,
    verify_offline,
)
from tests.factories import Members

Edit = Callable[[dict[str, Any]], None]


def _dump(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n"


def _edited(lines: list[str], number: int, change: Edit, key: SigningKey) -> list[str]:
    item = json.loads(lines[number - 1])
    change(item)
    return resign([*lines[: number - 1], _dump(item), *lines[number:]], key)


def _rehashed(change: Callable[[str], str]) -> Edit:
    """An entry edit that keeps the entry self-consistent: its canonical bytes changed, its hash
    recomputed, so only the check under test can see it."""

    def edit(item: dict[str, Any]) -> None:
        item["canonical"] = change(item["canonical"])
        body = bytes.fromhex(item["prev_hash"]) + item["canonical"].encode()
        item["hash"] = hashlib.sha256(body).hexdigest()

    return edit


def _signed_bytes(body: bytes, key: SigningKey) -> bytes:
    digest = hashlib.sha256(body).digest()
    trailer = {
        "type": "signature",
        "sha256": digest.hex(),
        "key_id": key.key_id,
        "signature": base64.b64encode(key.sign(digest)).decode(),
    }
    return body + _dump(trailer).encode()


async def _verify_bytes(tmp_path: Path, data: bytes, key: SigningKey, name: str) -> tuple[int, str]:
    path, key_path = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.pem"
    path.write_bytes(data)
    key_path.write_text(key.public_pem())
    return await run_verifier(path, key_path)


async def _verifier(*args: Path | str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(VERIFIER),
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_each_format_check_refuses_its_own_break(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
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
    code, out = await verify_offline(tmp_path, lines, key, "intact")
    assert code == 0, out
    firm, other = str(trail.firm_id), str(uuid.uuid4())
    first_moment = json.loads(json.loads(lines[1])["canonical"])["occurred_at"]
    last_moment = json.loads(json.loads(lines[2])["canonical"])["occurred_at"]
    later = canonical.timestamp(datetime.fromisoformat(last_moment) + timedelta(seconds=1))

    def relinked(item: dict[str, Any]) -> None:
        item["prev_hash"] = "11" * 32
        _rehashed(lambda text: text)(item)

    cases: list[tuple[list[str], int, str]] = [
        (_edited(lines, 2, relinked, key), 2, "the first entry must follow 32 zero bytes"),
        (
            _edited(lines, 2, _rehashed(lambda t: t.replace('"seq":1', '"seq":9')), key),
            2,
            "seq 1: canonical bytes name another seq or firm",
        ),
        (
            _edited(lines, 2, _rehashed(lambda t: t.replace(firm, other)), key),
            2,
            "seq 1: canonical bytes name another seq or firm",
        ),
        (
            _edited(lines, 4, lambda item: item.update(firm_id=other), key),
            4,
            "checkpoint of another firm or key",
        ),
        (
            _edited(lines, 1, lambda item: item.update(version=3), key),
            1,
            "not a CoverProof audit export (version 1 or 2) for this key",
        ),
        (
            _edited(lines, 1, lambda item: item.update(version=1), key),  # version 2's fields
            1,
            "not a CoverProof audit export (version 1 or 2) for this key",
        ),
        (
            _edited(lines, 1, lambda item: item.update(format="another"), key),
            1,
            "not a CoverProof audit export (version 1 or 2) for this key",
        ),
        (
            _edited(lines, 1, lambda item: item.update(scope="partial"), key),
            1,
            "not a CoverProof audit export (version 1 or 2) for this key",
        ),
        (
            _edited(lines, 1, lambda item: item.update({"from": first_moment}), key),
            1,
            "the dates do not match the scope",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_seq=3), key),
            5,
            "a full export ends at seq 2, not at the head 3",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_hash="22" * 32), key),
            5,
            "seq 2 is not the chain's head when exported",
        ),
        (
            _edited(lines, 1, lambda item: item.update(scope="dated", to=last_moment), key),
            5,
            "the first or last entry falls outside the export's dates",
        ),
        (
            _edited(
                lines, 1, lambda item: item.update({"scope": "dated", "from": last_moment}), key
            ),
            5,
            "the first or last entry falls outside the export's dates",
        ),
        (
            _edited(lines, 1, lambda item: item.update(scope="dated"), key),  # no dates
            1,
            "the dates do not match the scope",
        ),
        (
            _edited(lines, 1, lambda item: item.update({"scope": "dated", "from": "today"}), key),
            1,
            "malformed from in the header line",
        ),
        (
            _edited(lines, 1, lambda item: item.update(exported_at="now"), key),
            1,
            "malformed exported_at in the header line",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_seq="2"), key),
            1,
            "malformed head_seq in the header line",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_hash="not hex"), key),
            1,
            "malformed head_hash in the header line",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_seq=0), key),  # with a head_hash
            1,
            "a malformed chain head",
        ),
        (
            _edited(lines, 1, lambda item: item.update(head_seq=0, head_hash=None), key),
            5,
            "a full export ends at seq 2, not at the head 0",
        ),
        (
            _edited(
                lines,
                1,
                lambda item: item.update(
                    scope="dated", to=later, head_seq=1, head_hash=json.loads(lines[1])["hash"]
                ),
                key,
            ),
            5,
            "seq 2 is not the chain's head when exported",
        ),
        (
            [*lines[:-1], lines[-1].replace(f'"key_id":"{key.key_id}"', '"key_id":["x"]')],
            5,
            "malformed key_id in the signature line",
        ),
        (
            _edited(lines, 1, lambda item: item.update(scope="dated", to=later), key),
            0,
            "",
        ),
        (resign([lines[0], lines[1], lines[0], *lines[2:]], key), 3, "a header line in the "),
        (resign([lines[0], "not json\n", *lines[1:]], key), 2, "not a JSON line"),
        (
            _edited(lines, 3, lambda item: item.update(type=["entry"]), key),
            3,
            "unexpected fields for its line type",
        ),
        (
            _edited(lines, 1, lambda item: item.update(type="entry"), key),
            1,
            "unexpected fields for its line type",
        ),
    ]
    for n, (changed, number, reason) in enumerate(cases):
        code, out = await verify_offline(tmp_path, changed, key, f"case-{n}")
        if number == 0:  # the control: a dated header whose dates hold its entries
            assert code == 0, out
            assert f"dated export from the start to {later}, " in out
            continue
        assert code == 1, (n, out)
        assert out.startswith(f"BROKEN: line {number}: {reason}"), (n, out)

    body = "".join(lines[:-1]).encode()
    broken_utf8 = body.replace(b'"type":"entry"', b'"type":"entry\xff"', 1)
    code, out = await _verify_bytes(tmp_path, _signed_bytes(broken_utf8, key), key, "utf8")
    assert (code, out) == (1, "BROKEN: line 2: not a JSON line\n")


async def test_newlines_after_the_trailer_change_nothing_it_signs(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 2)
    lines = await export(owner_sessions, trail.firm_id, key)
    code, out = await verify_offline(tmp_path, [*lines, "\n", "\n"], key)
    assert code == 0, out
    assert ": entries 1..2 (2) of 2 intact, " in out
    code, out = await verify_offline(tmp_path, [*lines, "\n", " \n"], key, "space")
    assert code == 1, out


async def test_checkpoints_signed_before_a_key_rotation_verify_with_both_keys(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    new_key, old_key = signing_key(app), SigningKey(Ed25519PrivateKey.generate())
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, old_key)  # before the rotation
    await append(app_sessions, trail.actor, 1, start=3)
    # The rotated deployment lists the old key as retired: signing goes on from its checkpoint.
    await sign_head(app_sessions, trail, SigningKey(new_key.private, retired=(old_key.public,)))
    lines = await export(owner_sessions, trail.firm_id, new_key)
    path, new_pem, old_pem = tmp_path / "e.jsonl", tmp_path / "new.pem", tmp_path / "old.pem"
    path.write_text("".join(lines))
    new_pem.write_text(new_key.public_pem())
    old_pem.write_text(old_key.public_pem())

    code, out = await _verifier(path, new_pem)
    assert (code, out) == (
        1,
        "BROKEN: line 5: checkpoint of another firm or key\n",
    )
    code, out = await _verifier(path, new_pem, old_pem)
    assert code == 0, out
    assert ": entries 1..3 (3) of 3 intact, 2 signed checkpoint(s) verified, " in out
    assert out.endswith(f"signed by key {new_key.key_id}\n")
    # The old key alone does not vouch for an export the new one signed.
    code, out = await _verifier(path, old_pem)
    assert (code, out) == (1, "BROKEN: line 7: the export is not signed by a key given\n")


async def _kept(
    tmp_path: Path,
    sessions: async_sessionmaker[AsyncSession],
    trail: Trail,
    key: SigningKey,
    name: str,
) -> Path:
    """An export, written to a file as a regulator would keep it."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(await export(sessions, trail.firm_id, key)))
    return path


async def test_an_export_is_checked_against_earlier_ones_kept(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    """Someone who can rewrite the database, delete its checkpoints and have the platform sign
    an export of the result passes every check of that export alone; an export kept from
    before shows the rewrite, and a cut-off tail."""
    key = signing_key(app)
    pem = tmp_path / "key.pem"
    pem.write_text(key.public_pem())
    trail = await new_trail(members, app_sessions, 4)
    await sign_head(app_sessions, trail, key)
    first = await _kept(tmp_path, owner_sessions, trail, key, "first")
    await append(app_sessions, trail.actor, 2, start=5)
    second = await _kept(tmp_path, owner_sessions, trail, key, "second")
    code, out = await _verifier(second, pem, "--against", first)
    assert code == 0, out
    assert out.endswith(", agrees with 1 earlier export(s) at 4 seq(s)\n")  # entries 1..4
    assert ": entries 1..6 (6) of 6 intact, " in out

    # Entries 5 and 6 cut off: the export alone is intact, the earlier one shows the cut.
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq > 4"],
        {"firm": trail.firm_id},
    )
    cut = await _kept(tmp_path, owner_sessions, trail, key, "cut")
    code, out = await _verifier(cut, pem)
    assert code == 0, out
    code, out = await _verifier(cut, pem, "--against", first, second)
    assert (code, out) == (
        1,
        f"BROKEN: {second} holds seq 6, beyond the chain's end when this export was taken "
        "(cut off)\n",
    )

    # Rewritten from seq 3 with its checkpoint deleted and a new one signed: intact alone.
    await rewrite(superuser_engine, trail.firm_id, [3], relink=True)
    await tamper(
        superuser_engine,
        ["delete from audit_checkpoints where firm_id = :firm"],
        {"firm": trail.firm_id},
        table="audit_checkpoints",
    )
    await sign_head(app_sessions, trail, key)
    forged = await _kept(tmp_path, owner_sessions, trail, key, "forged")
    code, out = await _verifier(forged, pem)
    assert code == 0, out
    assert ": entries 1..4 (4) of 4 intact, 1 signed checkpoint(s) verified, " in out
    code, out = await _verifier(forged, pem, "--against", first)
    assert (code, out) == (1, f"BROKEN: seq 3 differs from {first} (the chain was rewritten)\n")

    # An earlier export that does not verify itself is no evidence either way.
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(first.read_bytes().replace(b'"seq":2', b'"seq":7', 1))
    code, out = await _verifier(second, pem, "--against", edited)
    assert code == 1, out
    assert out.startswith(f"BROKEN: {edited} does not verify: line ")


async def test_a_version_1_export_still_verifies_and_says_its_end_is_unsigned(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """Exports written before version 2 (no head, no dates) verify as they did, and the
    summary says that such an export cannot show where the chain ended."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 2)
    lines = await export(app_sessions, trail.firm_id, key)

    def version_1(item: dict[str, Any]) -> None:
        for name in ("from", "to", "head_seq", "head_hash"):
            del item[name]
        item["version"] = 1

    old = _edited(lines, 1, version_1, key)
    code, out = await verify_offline(tmp_path, old, key)
    assert code == 0, out
    assert out.startswith(
        f"OK: firm {trail.firm_id}: full export (version 1: its end unsigned), exported "
    )
    assert ": entries 1..2 (2) intact, 0 signed checkpoint(s) verified, " in out


async def _window(
    sessions: async_sessionmaker[AsyncSession], trail: Trail, first: int, last: int
) -> tuple[datetime, datetime]:
    """Dates that select seqs first..last."""
    async with tenant_transaction(sessions, trail.firm_id) as session:
        rows = await session.execute(
            select(AuditEntry.seq, AuditEntry.occurred_at).where(AuditEntry.seq.in_((first, last)))
        )
        at: dict[int, datetime] = dict(rows.all())
    return at[first], at[last] + timedelta(microseconds=1)


async def test_dated_exports_are_checked_against_earlier_ones_by_their_heads(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    """A version 2 header signs the chain's head when it was taken: two dated exports compare
    there even when they hold no entry in common, and a dated export of a chain cut since an
    earlier export shows the cut."""
    key = signing_key(app)
    pem = tmp_path / "key.pem"
    pem.write_text(key.public_pem())
    trail = await new_trail(members, app_sessions, 6)

    async def kept(name: str, first: int | None = None, last: int | None = None) -> Path:
        window = () if first is None else await _window(app_sessions, trail, first, last or first)
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(await export(app_sessions, trail.firm_id, key, *window)))
        return path

    full, middle = await kept("full"), await kept("middle", 2, 3)  # both at head 6
    code, out = await _verifier(middle, pem, "--against", full)
    assert code == 0, out
    assert out.endswith(", agrees with 1 earlier export(s) at 3 seq(s)\n")  # 2, 3 and 6
    code, out = await _verifier(full, pem, "--against", middle)  # the newest first
    assert (code, out) == (
        1,
        f"BROKEN: {middle} was exported after this export: give the newest one first\n",
    )

    # Rewritten from seq 5: a dated export of seq 1 alone still names the head, and differs.
    await rewrite(superuser_engine, trail.firm_id, [5], relink=True)
    first = await kept("first", 1)
    code, out = await _verifier(first, pem, "--against", middle)
    assert (code, out) == (1, f"BROKEN: seq 6 differs from {middle} (the chain was rewritten)\n")

    # Cut to seq 4: a dated export of seqs 3..4 is intact alone; the full one kept shows it.
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq > 4"],
        {"firm": trail.firm_id},
    )
    tail = await kept("tail", 3, 4)
    code, out = await _verifier(tail, pem)
    assert code == 0, out
    assert ": entries 3..4 (2) of 4 intact, " in out
    code, out = await _verifier(tail, pem, "--against", full)
    assert (code, out) == (
        1,
        f"BROKEN: {full} holds seq 6, beyond the chain's end when this export was taken "
        "(cut off)\n",
    )

    # Nothing in common (seq 1 at head 5 against seqs 3..4 at head 4): not called agreement.
    await append(app_sessions, trail.actor, 1, start=5)
    only_one = await kept("only-one", 1)  # head 5 now
    code, out = await _verifier(only_one, pem, "--against", tail)
    assert code == 1, out
    assert (
        out == f"NOT CHECKED: {tail} and this export vouch for no seq in common: nothing compared\n"
    )
