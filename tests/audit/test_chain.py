"""The audit chain: chained appends, concurrency, append-only, and tamper detection."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.audit import canonical, chain
from app.audit.actions import Action
from app.auth.actor import Actor, ActorType, Role
from app.cli import main
from app.db import calls
from app.db.engine import session_factory
from app.db.models import AuditEntry
from app.db.tenant import tenant_transaction
from tests.conftest import Database
from tests.factories import Member, Members, gql

RENAME = "mutation($name: String!) { updateFirm(input: {name: $name}) { firm { name } } }"


async def rename(client: httpx.AsyncClient, member: Member, name: str) -> None:
    body = await gql(client, RENAME, {"name": name}, member)
    assert body == {"data": {"updateFirm": {"firm": {"name": name}}}}, body


async def entries(sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID) -> list[object]:
    async with tenant_transaction(sessions, firm_id) as session:
        rows = await session.execute(
            text("select seq, prev_hash, hash, canonical, action from audit_log order by seq")
        )
        return list(rows.all())


async def test_a_mutation_appends_a_chained_entry(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await members.create()
    await rename(client, owner, "First Name Ltd")
    await rename(client, owner, "Second Name Ltd")
    rows = await entries(app_sessions, owner.firm_id)
    assert [row.seq for row in rows] == [1, 2]  # type: ignore[attr-defined]
    first, second = rows
    assert first.prev_hash == bytes(32)  # type: ignore[attr-defined]
    assert second.prev_hash == first.hash  # type: ignore[attr-defined]
    for row in rows:
        assert row.hash == hashlib.sha256(row.prev_hash + row.canonical).digest()  # type: ignore[attr-defined]
        assert row.action == "firm.updated"  # type: ignore[attr-defined]
    assert b'"to":"Second Name Ltd"' in second.canonical  # type: ignore[attr-defined]


async def test_concurrent_mutations_leave_one_unbroken_chain(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await members.create()
    await asyncio.gather(*(rename(client, owner, f"Concurrent {n} Ltd") for n in range(20)))
    rows = await entries(app_sessions, owner.firm_id)
    assert [row.seq for row in rows] == list(range(1, 21))  # type: ignore[attr-defined]
    async with tenant_transaction(app_sessions, owner.firm_id) as session:
        result = await chain.verify(session, owner.firm_id)
    assert (result.ok, result.entries_checked, result.head_seq) == (True, 20, 20)


async def test_a_failed_mutation_writes_no_entry(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await members.create()
    viewer = await members.create(Role.VIEWER, firm_id=owner.firm_id)
    body = await gql(client, RENAME, {"name": "Viewer Was Here"}, viewer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await entries(app_sessions, owner.firm_id) == []


@pytest.mark.parametrize("role", ["app", "owner"])
async def test_no_role_of_ours_can_change_or_remove_entries(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    role: str,
) -> None:
    owner = await members.create()
    await rename(client, owner, "Append Only Ltd")
    sessions = app_sessions if role == "app" else owner_sessions
    for statement in [
        "update audit_log set action = 'x'",
        "delete from audit_log",
        "truncate audit_log",
    ]:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with tenant_transaction(sessions, owner.firm_id) as session:
                await session.execute(text(statement))


async def test_a_superuser_is_stopped_by_the_trigger(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Whoever holds the privileges is still stopped, unless it disables the trigger."""
    owner = await members.create()
    await rename(client, owner, "Owner Proof Ltd")
    sessions = session_factory(superuser_engine)
    for statement in ["update audit_log set action = 'x'", "delete from audit_log"]:
        with pytest.raises(DBAPIError, match="append-only"):
            async with tenant_transaction(sessions, owner.firm_id) as session:
                await session.execute(text(statement))
    with pytest.raises(DBAPIError, match="append-only"):
        async with tenant_transaction(sessions, owner.firm_id) as session:
            await session.execute(text("truncate audit_log cascade"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("actor_type", "system"),
        ("actor_id", "someone-else"),
        ("target_type", "user"),
        ("target_id", None),
        ("details", {"n": 2}),
        ("details", {"n": 1, "m": 1}),
        ("ip", "10.0.0.1"),
        ("ip", None),
        (None, None),  # the control: an entry that agrees with its bytes is taken
    ],
)
async def test_the_database_refuses_an_entry_whose_fields_disagree_with_its_bytes(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    field: str | None,
    value: object,
) -> None:
    """Verification would find the difference later; the append trigger refuses it as the
    entry is written, whatever writes it."""
    owner = await members.create()
    fields: dict[str, Any] = {
        "seq": 1,
        "occurred_at": datetime.now(UTC),
        "actor_type": "user",
        "actor_id": str(owner.user_id),
        "action": "firm.updated",
        "target_type": "firm",
        "target_id": str(owner.firm_id),
        "details": {"n": 1},
        "ip": "192.0.2.1",
    }
    body = canonical.encode(canonical.entry_body(firm_id=str(owner.firm_id), **fields))
    if field is not None:
        fields[field] = value
    row = {
        "id": uuid.uuid4(),
        "firm_id": owner.firm_id,
        **fields,
        "prev_hash": canonical.GENESIS,
        "hash": canonical.chain_hash(canonical.GENESIS, body),
        "canonical": body,
    }
    async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
        if field is None:
            await session.execute(insert(AuditEntry).values(row))
            return
        with pytest.raises(DBAPIError, match="canonical bytes disagree with the row"):
            await session.execute(insert(AuditEntry).values(row))


async def test_the_database_refuses_an_append_that_forks_the_chain(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await members.create()
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
        await chain.record(session, actor, Action.FIRM_UPDATED)
    body = canonical.encode(
        {"v": 1, "firm_id": str(owner.firm_id), "seq": 1, "action": "firm.updated"}
    )
    with pytest.raises(DBAPIError, match="does not follow the head"):
        async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
            await session.execute(
                text(
                    "insert into audit_log (id, firm_id, seq, occurred_at, actor_type, action, "
                    "details, prev_hash, hash, canonical) values (:id, :firm, 1, now(), 'user', "
                    "'firm.updated', '{}', :prev, :hash, :body)"
                ),
                {
                    "id": uuid.uuid4(),
                    "firm": owner.firm_id,
                    "prev": bytes(32),
                    "hash": canonical.chain_hash(bytes(32), body),
                    "body": body,
                },
            )


async def tamper(
    superuser_engine: AsyncEngine, statement: str, firm_id: uuid.UUID, **params: object
) -> None:
    """What only someone with superuser rights could do: disable the trigger and edit."""
    async with superuser_engine.begin() as conn:
        await conn.execute(text("alter table audit_log disable trigger audit_log_no_update_delete"))
        await conn.execute(text(statement), {"firm": firm_id, **params})
        await conn.execute(text("alter table audit_log enable trigger audit_log_no_update_delete"))


async def rewrite_canonical(
    superuser_engine: AsyncEngine, firm_id: uuid.UUID, pattern: str, replacement: str
) -> None:
    """The firm's entries' canonical bytes with ``pattern`` (a regular expression) replaced and
    their hashes recomputed: each entry consistent in itself, as only a superuser could make."""
    await tamper(
        superuser_engine,
        "update audit_log set canonical = convert_to(regexp_replace(convert_from(canonical, "
        "'UTF8'), :pattern, :replacement), 'UTF8') where firm_id = :firm",
        firm_id,
        pattern=pattern,
        replacement=replacement,
    )
    rehash = "update audit_log set hash = sha256(prev_hash || canonical) where firm_id = :firm"
    await tamper(superuser_engine, rehash, firm_id)


async def cli_verify(
    database: Database, firm_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> int:
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    return await asyncio.to_thread(main, ["audit", "verify", "--firm", str(firm_id)])


@pytest.mark.parametrize(
    ("statement", "broken_seq", "reason"),
    [
        (
            "update audit_log set details = '{\"changes\": {}}' where firm_id = :firm and seq = 2",
            2,
            "stored fields differ",
        ),
        ("delete from audit_log where firm_id = :firm and seq = 2", 2, "entry missing"),
    ],
    ids=["changed-field", "deleted-middle-entry"],
)
async def test_the_cli_names_the_firm_and_seq_of_a_break(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    statement: str,
    broken_seq: int,
    reason: str,
) -> None:
    owner = await members.create()
    for n in range(3):
        await rename(client, owner, f"Tamper {n} Ltd")
    assert await cli_verify(database, owner.firm_id, monkeypatch) == 0
    assert "ok: 1 chain(s), 3 entries verified" in capsys.readouterr().out
    await tamper(superuser_engine, statement, owner.firm_id)
    assert await cli_verify(database, owner.firm_id, monkeypatch) == 1
    out = capsys.readouterr().out
    assert f"BROKEN firm {owner.firm_id} at seq {broken_seq}" in out
    assert reason in out


async def test_a_replaced_hash_is_caught(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await members.create()
    for n in range(3):
        await rename(client, owner, f"Relink {n} Ltd")
    await tamper(
        superuser_engine,
        "update audit_log set hash = sha256(prev_hash || canonical || 'x'::bytea) "
        "where firm_id = :firm and seq = 2",
        owner.firm_id,
    )
    async with tenant_transaction(app_sessions, owner.firm_id) as session:
        result = await chain.verify(session, owner.firm_id)
    assert not result.ok
    assert result.failure_seq == 2


def test_canonical_bytes_are_sorted_compact_utf8_without_floats() -> None:
    assert canonical.encode({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(TypeError, match="floats"):
        canonical.encode({"a": [1.5]})


class _Amount(float):
    pass


@pytest.mark.parametrize(
    "details",
    [OrderedDict(b=1.5), defaultdict(int, b=1.5), {"b": (1, 2.5)}, {"b": _Amount(2)}],
)
def test_no_float_reaches_canonical_bytes_in_any_container_the_app_might_build(
    details: object,
) -> None:
    with pytest.raises(TypeError, match="floats"):
        canonical.encode({"details": details})


@pytest.mark.parametrize(
    ("value", "held"),
    [
        (1.5, True),
        ({"a": {"b": [1, "x", {"c": 0.0}]}}, True),
        ([[[2.0]]], True),
        ({"a": [1, "1.5", None, True, {"b": 2**70}]}, False),
        ({}, False),
    ],
)
def test_a_float_is_found_at_any_depth(value: object, held: bool) -> None:
    assert canonical.holds_float(value) is held


async def _one_entry(
    members: Members, sessions: async_sessionmaker[AsyncSession], details: dict[str, Any], **kw: Any
) -> Member:
    """A firm whose chain holds one entry with these details."""
    owner = await members.create()
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER, **kw)
    async with tenant_transaction(sessions, owner.firm_id, owner.user_id) as session:
        await chain.record(session, actor, Action.FIRM_UPDATED, "firm", owner.firm_id, details)
    return owner


async def _verified(sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID) -> Any:
    async with tenant_transaction(sessions, firm_id) as session:
        return await chain.verify(session, firm_id)


async def test_a_value_changed_to_an_equal_looking_type_is_caught(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    owner = await _one_entry(members, app_sessions, {"flag": True, "n": 2})
    # true -> 1 and 2 -> 2.0 compare equal in Python; the verification must not be fooled.
    for forged in ('{"flag": 1, "n": 2}', '{"flag": true, "n": 2.0}'):
        await tamper(
            superuser_engine,
            f"update audit_log set details = '{forged}'::jsonb where firm_id = :firm",
            owner.firm_id,
        )
        result = await _verified(app_sessions, owner.firm_id)
        assert (result.ok, result.failure_seq) == (False, 1), forged


@pytest.mark.parametrize(
    "change",
    [
        "occurred_at = occurred_at + interval '1 microsecond'",
        # The same digits BC (year y AD is 2y - 1 years after y BC): YYYY leaves the era out.
        "occurred_at = occurred_at "
        "- make_interval(years => 2 * extract(year from occurred_at at time zone 'UTC')::int - 1)",
        "occurred_at = occurred_at + interval '10000 years'",
        "occurred_at = 'infinity'",
        "actor_id = 'someone-else'",
        "actor_type = 'system'",
        "action = 'firm.created'",
        "target_type = 'declaration'",
        "target_id = 'another-target'",
        "ip = '10.0.0.1'",
        "seq = seq",  # the control: nothing changed, so it still verifies
    ],
)
async def test_every_stored_field_is_checked_against_the_canonical_bytes(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    change: str,
) -> None:
    owner = await _one_entry(members, app_sessions, {"n": 1}, ip="192.0.2.1")
    await tamper(
        superuser_engine, f"update audit_log set {change} where firm_id = :firm", owner.firm_id
    )
    result = await _verified(app_sessions, owner.firm_id)
    if change == "seq = seq":
        assert result.ok, result
    else:
        assert (result.ok, result.failure_seq) == (False, 1), change
        assert result.failure_reason == "stored fields differ from the entry's canonical bytes"


async def test_details_orjson_cannot_read_are_still_compared(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    owner = await _one_entry(members, app_sessions, {"n": 1})
    # An integer beyond 64 bits (which the app never writes) takes the slower comparison.
    for forged in ('{"n": 1180591620717411303424}', '{"n": 1.5}'):
        await tamper(
            superuser_engine,
            f"update audit_log set details = '{forged}'::jsonb where firm_id = :firm",
            owner.firm_id,
        )
        result = await _verified(app_sessions, owner.firm_id)
        assert (result.ok, result.failure_seq) == (False, 1), forged


@pytest.mark.parametrize(
    "moment", ["infinity", "2026-11-29 07:31:28.123456+00 BC", "12026-11-29 07:31:28+00"]
)
async def test_a_moment_outside_the_canonical_years_never_matches(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    moment: str,
) -> None:
    """PostgreSQL writes no canonical text for such a moment: not even canonical bytes that
    say null (which a rewritten link could hold) may match it."""
    owner = await _one_entry(members, app_sessions, {"n": 1})
    await rewrite_canonical(
        superuser_engine, owner.firm_id, '"occurred_at":"[^"]*"', '"occurred_at":null'
    )
    async with tenant_transaction(app_sessions, owner.firm_id) as session:
        stored = (await session.execute(text("select canonical from audit_log"))).scalar_one()
    assert b'"occurred_at":null' in stored
    await tamper(
        superuser_engine,
        f"update audit_log set occurred_at = '{moment}' where firm_id = :firm",
        owner.firm_id,
    )
    result = await _verified(app_sessions, owner.firm_id)
    assert (result.ok, result.failure_seq) == (False, 1), result
    assert result.failure_reason == "stored fields differ from the entry's canonical bytes"


async def test_integers_beyond_64_bits_are_compared_exactly(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    owner = await _one_entry(members, app_sessions, {"n": 1})
    big = 2**70  # read as a float by orjson, where ...424 and ...425 look alike
    await rewrite_canonical(superuser_engine, owner.firm_id, '"n":1', f'"n":{big}')
    for details, ok in ((big, True), (big + 1, False)):
        await tamper(
            superuser_engine,
            f"update audit_log set details = '{{\"n\": {details}}}'::jsonb where firm_id = :firm",
            owner.firm_id,
        )
        result = await _verified(app_sessions, owner.firm_id)
        assert result.ok is ok, (details, result)


@pytest.mark.parametrize(
    "stored", ["1180591620717411303424", "1.0", "0.1000000000000000055511151231257827"]
)
async def test_canonical_bytes_holding_a_float_never_match(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    stored: str,
) -> None:
    """Canonical bytes never hold a float: forged ones that hold one never match, even the
    float a lossy reading of the stored number gives (2**70 read as 1.1805916207174113e+21)."""
    owner = await _one_entry(members, app_sessions, {"n": 1})
    as_float = orjson.dumps(orjson.loads(stored)).decode()
    await rewrite_canonical(superuser_engine, owner.firm_id, '"n":1', f'"n":{as_float}')
    await tamper(
        superuser_engine,
        f"update audit_log set details = '{{\"n\": {stored}}}'::jsonb where firm_id = :firm",
        owner.firm_id,
    )
    result = await _verified(app_sessions, owner.firm_id)
    assert (result.ok, result.failure_seq) == (False, 1), result
    assert result.failure_reason == "stored fields differ from the entry's canonical bytes"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 29, 7, 31, 28, 123456, tzinfo=UTC),
        datetime(2026, 11, 29, 7, 31, 28, tzinfo=UTC),  # a zero fraction
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(999, 5, 27, 12, 0, 0, 100000, tzinfo=UTC),  # strftime may not pad this year
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 3, 29, 1, 30, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=timezone(timedelta(0), "GMT")),
    ],
)
def test_timestamps_are_rfc_3339_in_utc_with_six_fractional_digits(moment: datetime) -> None:
    assert canonical.timestamp(moment) == _rfc_3339(moment)


def _rfc_3339(moment: datetime) -> str:
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def test_timestamps_over_many_moments_are_the_canonical_text() -> None:
    pick = random.Random(20261129)  # noqa: S311 (reproducible moments, not secrets)
    for _ in range(20_000):
        moment = datetime(1, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=pick.randrange(0, 315_537_897_599_999_999)
        )
        if pick.random() < 0.2:
            moment = moment.replace(microsecond=0)
        assert canonical.timestamp(moment) == _rfc_3339(moment), moment
        if moment.year >= 1000:  # what every entry so far was written with
            assert canonical.timestamp(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def written_at(
    sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID, moments: list[datetime]
) -> None:
    """A firm's chain of one entry at each of these moments, in this order, chained as
    chain.record chains them (whatever the clock said, as an app server's might)."""
    rows, prev = [], canonical.GENESIS
    for seq, moment in enumerate(moments, start=1):
        fields: dict[str, Any] = {
            "seq": seq,
            "occurred_at": moment,
            "actor_type": "system",
            "actor_id": None,
            "action": "firm.updated",
            "target_type": None,
            "target_id": None,
            "details": {},
            "ip": None,
        }
        body = canonical.encode(canonical.entry_body(firm_id=str(firm_id), **fields))
        digest = canonical.chain_hash(prev, body)
        rows.append(
            {"id": uuid.uuid4(), "firm_id": firm_id, **fields}
            | {"prev_hash": prev, "hash": digest, "canonical": body}
        )
        prev = digest
    async with tenant_transaction(sessions, firm_id) as session:
        await session.execute(insert(AuditEntry), rows)


async def test_entries_at_any_moment_python_can_hold_verify(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Verification compares the timestamp text PostgreSQL writes with the canonical bytes,
    which canonical.timestamp wrote: the two must agree on every moment an entry can have."""
    pick = random.Random(20261130)  # noqa: S311 (reproducible moments, not secrets)
    moments = [  # the first and last moments but one: asyncpg writes those as -/+infinity
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(999, 5, 27, 12, 0, 0, 100000, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 11, 29, 7, 31, 28, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    ]
    for _ in range(2_000):
        moment = datetime(1, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=pick.randrange(1, 315_537_897_599_999_998)
        )
        moments.append(moment.replace(microsecond=0) if pick.random() < 0.2 else moment)
    owner = await members.create()
    await written_at(app_sessions, owner.firm_id, moments)
    # In whatever zone the session is (offsets of odd minutes, and of seconds in the past).
    for zone in ("UTC", "Asia/Kathmandu", "Europe/Amsterdam"):
        async with tenant_transaction(app_sessions, owner.firm_id) as session:
            await session.execute(text("select set_config('TimeZone', :z, true)"), {"z": zone})
            result = await chain.verify(session, owner.firm_id)
        failed = None if result.failure_seq is None else moments[result.failure_seq - 1]
        assert (result.ok, result.entries_checked) == (True, len(moments)), (zone, failed, result)


async def test_a_page_ending_at_the_greatest_seq_ends_the_chain(
    members: Members,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages of two read by seq: one ending at bigint's greatest seq (an entry moved there), past
    which no page can be asked for, is read, and the move is named."""
    monkeypatch.setattr(calls, "BATCH", 2)
    owner = await members.create()
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    for n in range(2):
        async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
            await chain.record(session, actor, Action.FIRM_UPDATED, "firm", owner.firm_id, {"n": n})
    greatest = 2**63 - 1
    await tamper(
        superuser_engine,
        f"update audit_log set seq = {greatest} where firm_id = :firm and seq = 2",
        owner.firm_id,
    )
    result = await _verified(app_sessions, owner.firm_id)
    assert (result.ok, result.failure_seq, result.entries_checked) == (False, 2, 1), result
    assert result.failure_reason.startswith(f"seq {greatest} found where 2 was expected")


@pytest.mark.parametrize(("length", "broken"), [(0, None), (4, None), (5, None), (5, 2), (5, 3)])
async def test_verification_reads_across_batches(
    members: Members,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    length: int,
    broken: int | None,
) -> None:
    """Batches of two: a chain that ends on a boundary, or past one, verifies; a break on
    either side of a boundary is named, with the entries before it counted."""
    monkeypatch.setattr(calls, "BATCH", 2)
    owner = await members.create()
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    for n in range(length):
        async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
            await chain.record(session, actor, Action.FIRM_UPDATED, "firm", owner.firm_id, {"n": n})
    if broken is not None:
        statement = (
            f"update audit_log set details = '{{}}' where firm_id = :firm and seq = {broken}"
        )
        await tamper(superuser_engine, statement, owner.firm_id)
    result = await _verified(app_sessions, owner.firm_id)
    if broken is None:
        assert (result.ok, result.entries_checked, result.head_seq) == (True, length, length)
    else:
        assert (result.ok, result.failure_seq, result.entries_checked) == (
            False,
            broken,
            broken - 1,
        )
        assert "stored fields differ" in result.failure_reason
