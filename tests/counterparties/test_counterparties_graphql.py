"""Counterparties through the GraphQL API: admins manage, everyone reads, each firm sees only its
own, every change is audited, and cover status follows the latest PI cover confirmation."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app import calendar
from app.auth.actor import Role
from app.config import Settings
from app.db.models import Counterparty, Declaration
from app.db.tenant import tenant_transaction
from app.schema import counterparties as counterparty_types
from tests.factories import Member, Members, codes, gql

FIELDS = "id name kind frn contactName contactEmail notes archived"
CREATE = (
    "mutation($input: CounterpartyCreateInput!) "
    f"{{ createCounterparty(input: $input) {{ counterparty {{ {FIELDS} }} }} }}"
)
UPDATE = (
    "mutation($id: UUID!, $input: CounterpartyUpdateInput!) "
    f"{{ updateCounterparty(id: $id, input: $input) {{ counterparty {{ {FIELDS} }} }} }}"
)
ARCHIVE = "mutation($id: UUID!) { archiveCounterparty(id: $id) { counterparty { id archived } } }"
ONE = f"query($id: UUID!) {{ counterparty(id: $id) {{ {FIELDS} }} }}"
COVER = "query($id: UUID!) { counterparty(id: $id) { coverStatus { state until } } }"
LIST = """query($search: String, $all: Boolean! = false, $first: Int! = 20, $after: String) {
  counterparties(search: $search, includeArchived: $all, first: $first, after: $after) {
    edges { cursor node { id name } }
    pageInfo { hasNextPage endCursor }
  }
}"""
ACME = {
    "name": "  Acme Introducers Ltd ",
    "kind": "INTRODUCER",
    "frn": "7654321",
    "contactName": "Ada Lovelace",
    "contactEmail": "Ada@Acme.Example",
    "notes": "Introduces mortgage clients.",
}


async def create(client: httpx.AsyncClient, admin: Member, **fields: Any) -> dict[str, Any]:
    body = await gql(client, CREATE, {"input": {"kind": "OTHER", **fields}}, admin)
    assert "errors" not in body, body
    counterparty: dict[str, Any] = body["data"]["createCounterparty"]["counterparty"]
    return counterparty


async def names(client: httpx.AsyncClient, member: Member, **variables: Any) -> list[str]:
    body = await gql(client, LIST, variables, member)
    assert "errors" not in body, body
    return [edge["node"]["name"] for edge in body["data"]["counterparties"]["edges"]]


async def audit_trail(engine: AsyncEngine, firm_id: uuid.UUID, target: str) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select action, actor_id, details from audit_log "
                "where firm_id = :firm and target_type = 'counterparty' and target_id = :target "
                "order by seq"
            ),
            {"firm": firm_id, "target": target},
        )
        return list(rows.all())


async def add_counterparties(
    sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID, names: list[str]
) -> list[uuid.UUID]:
    """Rows written straight into the firm's tenant context (setup, not the thing under test)."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in names]
    rows = [
        {
            "id": ident,
            "firm_id": firm_id,
            "name": name,
            "kind": "introducer",
            "created_at": now,
            "updated_at": now,
        }
        for ident, name in zip(ids, names, strict=True)
    ]
    async with tenant_transaction(sessions, firm_id) as session:
        await session.execute(insert(Counterparty), rows)
    return ids


async def add_declaration(
    sessions: async_sessionmaker[AsyncSession],
    firm_id: uuid.UUID,
    counterparty_id: uuid.UUID,
    period_end: str,
    submitted_at: datetime,
    *,
    key: str = "pi_cover",
    status: str = "submitted",
    **answers: Any,
) -> None:
    """A confirmation as the public submit flow would have left it."""
    async with tenant_transaction(sessions, firm_id) as session:
        await session.execute(
            insert(Declaration).values(
                id=uuid.uuid4(),
                firm_id=firm_id,
                template_id=uuid.uuid4(),
                template_version=1,
                template_snapshot={"key": key, "name": "PI cover", "questions": []},
                recipient_name="Broker",
                recipient_email="broker@example.test",
                counterparty_id=counterparty_id,
                status=status,
                submitted_at=submitted_at if status == "submitted" else None,
                answers={"period_end": period_end, **answers},
            )
        )


async def test_an_admin_creates_updates_and_archives_with_an_audit_entry_each(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    admin = await members.create(Role.ADMIN, firm_id=(await members.create()).firm_id)
    created = await create(client, admin, **ACME)
    assert created == {
        "id": created["id"],
        "name": "Acme Introducers Ltd",
        "kind": "INTRODUCER",
        "frn": "7654321",
        "contactName": "Ada Lovelace",
        "contactEmail": "ada@acme.example",
        "notes": "Introduces mortgage clients.",
        "archived": False,
    }
    ident = created["id"]
    body = await gql(
        client, UPDATE, {"id": ident, "input": {"kind": "INSURER", "frn": None}}, admin
    )
    assert body["data"]["updateCounterparty"]["counterparty"] == {
        **created,
        "kind": "INSURER",
        "frn": None,
    }
    # Re-sending the current values changes nothing, so nothing is recorded.
    body = await gql(client, UPDATE, {"id": ident, "input": {"kind": "INSURER"}}, admin)
    assert "errors" not in body
    body = await gql(client, ARCHIVE, {"id": ident}, admin)
    assert body["data"]["archiveCounterparty"]["counterparty"] == {"id": ident, "archived": True}
    assert codes(await gql(client, ARCHIVE, {"id": ident}, admin)) == ["BAD_USER_INPUT"]

    trail = await audit_trail(superuser_engine, admin.firm_id, ident)
    assert [row.action for row in trail] == [
        "counterparty.created",
        "counterparty.updated",
        "counterparty.archived",
    ]
    assert {row.actor_id for row in trail} == {str(admin.user_id)}
    assert trail[0].details["contact_email"] == "ada@acme.example"
    assert trail[1].details == {
        "changes": {
            "frn": {"from": "7654321", "to": None},
            "kind": {"from": "introducer", "to": "insurer"},
        }
    }


async def test_viewers_and_members_read_but_cannot_write(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    existing = await create(client, owner, name="Kept Ltd")
    for role in (Role.VIEWER, Role.MEMBER):
        someone = await members.create(role, firm_id=owner.firm_id)
        assert codes(await gql(client, CREATE, {"input": ACME}, someone)) == ["FORBIDDEN"]
        body = await gql(
            client, UPDATE, {"id": existing["id"], "input": {"name": "Hijacked"}}, someone
        )
        assert codes(body) == ["FORBIDDEN"]
        assert codes(await gql(client, ARCHIVE, {"id": existing["id"]}, someone)) == ["FORBIDDEN"]
        assert await names(client, someone) == ["Kept Ltd"]
        body = await gql(client, ONE, {"id": existing["id"]}, someone)
        assert body["data"]["counterparty"] == existing
    trail = await audit_trail(superuser_engine, owner.firm_id, existing["id"])
    assert [row.action for row in trail] == ["counterparty.created"]
    assert codes(await gql(client, LIST)) == ["UNAUTHENTICATED"]


async def test_bad_input_is_refused_per_field_and_nothing_is_created(
    client: httpx.AsyncClient, members: Members
) -> None:
    admin = await members.create()
    bad = {"name": "  ", "kind": "INSURER", "frn": "12AB", "contactEmail": "not-an-email"}
    body = await gql(client, CREATE, {"input": bad}, admin)
    assert codes(body) == ["BAD_USER_INPUT"]
    fields = {item["field"] for item in body["errors"][0]["extensions"]["fields"]}
    assert fields == {"name", "frn", "contactEmail"}
    for field, value in [("notes", "x" * 5001), ("contactName", "x" * 201), ("name", "x" * 201)]:
        assert codes(await gql(client, CREATE, {"input": {**ACME, field: value}}, admin)) == [
            "BAD_USER_INPUT"
        ]
    assert codes(await gql(client, CREATE, {"input": {**ACME, "name": "a\x00b"}}, admin)) == [
        "BAD_USER_INPUT"
    ]
    # Unknown keys and kinds never reach the service: GraphQL refuses the variables.
    for wrong in ({**ACME, "firmId": str(uuid.uuid4())}, {**ACME, "kind": "ALIEN"}):
        assert codes(await gql(client, CREATE, {"input": wrong}, admin)) == ["BAD_USER_INPUT"]
    assert await names(client, admin, all=True) == []

    existing = await create(client, admin, name="Valid Ltd")
    for change in ({"name": None}, {"kind": None}, {"frn": "1"}, {"contactEmail": "@x"}):
        body = await gql(client, UPDATE, {"id": existing["id"], "input": change}, admin)
        assert codes(body) == ["BAD_USER_INPUT"], change
    assert (await gql(client, ONE, {"id": existing["id"]}, admin))["data"]["counterparty"] == (
        existing
    )


async def test_paging_is_complete_and_ordered_by_name_ignoring_case(
    client: httpx.AsyncClient, members: Members, owner_sessions: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await members.create(Role.VIEWER)
    # Pairs of names equal but for case, so the id breaks ties across page boundaries.
    spellings = ["alpha", "ALPHA", "Alpha"]
    wanted = [f"{spellings[i % 3]}{i // 2:02d}" for i in range(25)]
    ids = await add_counterparties(owner_sessions, viewer.firm_id, wanted)
    expected = [
        str(ident) for _, ident in sorted(zip((n.lower() for n in wanted), ids, strict=True))
    ]
    seen: list[str] = []
    after: str | None = None
    pages = []
    while True:
        body = await gql(client, LIST, {"first": 10, "after": after}, viewer)
        connection = body["data"]["counterparties"]
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        pages.append(connection["pageInfo"]["hasNextPage"])
        after = connection["pageInfo"]["endCursor"]
        if not connection["pageInfo"]["hasNextPage"]:
            break
    assert pages == [True, True, False]
    assert seen == expected
    for first in (0, 101):
        body = await gql(client, LIST, {"first": first}, viewer)
        assert codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["fields"][0]["field"] == "first"
    # A cursor whose key is a lone surrogate: valid JSON, but no text the database can take.
    surrogate = f'["\\ud800", "{uuid.uuid4()}"]'.encode()
    forged = base64.urlsafe_b64encode(surrogate).decode().rstrip("=")
    for bad in (
        {"after": "not a cursor"},
        {"after": forged},
        {"search": "x" * 201},
        {"search": "a\x00"},
    ):
        assert codes(await gql(client, LIST, bad, viewer)) == ["BAD_USER_INPUT"], bad


@pytest.mark.parametrize(
    "name",
    [
        "株式会社" + "東京海上保険代理店" * 5 + "日本橋支店" * 2,  # 59 characters
        "Ωμέγα Ασφαλιστική " * 11,  # 198
        'A "B" ' * 33,  # 198, 66 of them quotation marks, which JSON escapes
        "\U0001f6e1\ufe0f" * 100,  # 200: a shield emoji, each four bytes and a selector
    ],
)
async def test_a_page_can_be_followed_past_any_name_a_counterparty_may_have(
    client: httpx.AsyncClient, members: Members, name: str
) -> None:
    """A cursor holds the name of the page's last counterparty: whatever that name, the same
    list takes it back. A name of 50 characters from outside ASCII made a cursor the list then
    refused, so no counterparty after it could be reached."""
    admin = await members.create()
    names = [name.strip()[:199], name.strip()[:199] + "Z"]  # the second sorts after
    for each in names:
        created = await gql(client, CREATE, {"input": {"kind": "INSURER", "name": each}}, admin)
        assert "errors" not in created, created
    body = await gql(client, LIST, {"first": 1}, admin)
    after = body["data"]["counterparties"]["pageInfo"]["endCursor"]
    body = await gql(client, LIST, {"first": 1, "after": after}, admin)
    assert "errors" not in body, body
    assert [e["node"]["name"] for e in body["data"]["counterparties"]["edges"]] == names[1:]


@pytest.mark.parametrize(
    "email",
    [
        "ops@\u202eoc.knab",  # a right-to-left override: shows as ops@bank.co
        "ops\u200b@bank.co",  # a zero-width space no one sees
        "ops@ban\u2066k.co",  # an isolate
        "\u200fops@bank.co",  # a right-to-left mark
    ],
)
async def test_a_contact_email_is_shown_as_it_is_stored(
    client: httpx.AsyncClient, members: Members, email: str
) -> None:
    """Listed to members and printed in packs, as a counterparty's names are."""
    admin = await members.create()
    body = await gql(
        client, CREATE, {"input": {"kind": "INSURER", "name": "Acme", "contactEmail": email}}, admin
    )
    assert codes(body) == ["BAD_USER_INPUT"], body
    fields = body["errors"][0]["extensions"]["fields"]
    assert [f["field"] for f in fields] == ["contactEmail"], body


async def test_search_matches_name_frn_or_email_and_wildcards_are_literal(
    client: httpx.AsyncClient, members: Members
) -> None:
    admin = await members.create()
    await create(client, admin, **ACME)
    await create(client, admin, name="Brightside 100% Cover", frn="123456")
    await create(client, admin, name="Under_score Ltd", contactEmail="ops@brightside.example")
    await create(client, admin, name="Plain Ltd")
    assert await names(client, admin, search="acme") == ["Acme Introducers Ltd"]
    assert await names(client, admin, search="  765432 ") == ["Acme Introducers Ltd"]
    assert await names(client, admin, search="ADA@ACME") == ["Acme Introducers Ltd"]
    assert await names(client, admin, search="brightside") == [
        "Brightside 100% Cover",
        "Under_score Ltd",
    ]
    assert await names(client, admin, search="%") == ["Brightside 100% Cover"]
    assert await names(client, admin, search="_") == ["Under_score Ltd"]
    assert await names(client, admin, search="0% C") == ["Brightside 100% Cover"]
    assert await names(client, admin, search="'; drop table counterparties; --") == []
    assert len(await names(client, admin, search="  ")) == 4


async def test_archived_counterparties_are_hidden_unless_asked_for(
    client: httpx.AsyncClient, members: Members
) -> None:
    admin = await members.create()
    gone = await create(client, admin, name="Gone Ltd")
    await create(client, admin, name="Here Ltd")
    await gql(client, ARCHIVE, {"id": gone["id"]}, admin)
    assert await names(client, admin) == ["Here Ltd"]
    assert await names(client, admin, search="gone") == []
    assert await names(client, admin, all=True) == ["Gone Ltd", "Here Ltd"]
    body = await gql(client, ONE, {"id": gone["id"]}, admin)
    assert body["data"]["counterparty"]["archived"] is True


async def test_another_firm_cannot_see_or_change_a_counterparty(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    a = await members.create(name="Firm A Ltd")
    b = await members.create(name="Firm B Ltd")
    theirs = await create(client, a, **ACME)
    await create(client, b, name="B's Own Ltd")
    ident = theirs["id"]
    assert codes(await gql(client, ONE, {"id": ident}, b)) == ["NOT_FOUND"]
    assert await names(client, b, all=True) == ["B's Own Ltd"]
    for search in ("acme", "7654321", "ada@acme.example"):
        assert await names(client, b, search=search, all=True) == []
    body = await gql(client, UPDATE, {"id": ident, "input": {"name": "Stolen"}}, b)
    assert codes(body) == ["NOT_FOUND"]
    assert codes(await gql(client, ARCHIVE, {"id": ident}, b)) == ["NOT_FOUND"]
    assert (await gql(client, ONE, {"id": ident}, a))["data"]["counterparty"] == theirs
    trail = await audit_trail(superuser_engine, a.firm_id, ident)
    assert [row.action for row in trail] == ["counterparty.created"]
    assert await audit_trail(superuser_engine, b.firm_id, ident) == []


async def test_cover_status_follows_the_latest_submission_and_the_clock(
    client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    viewer = await members.create(Role.VIEWER)
    covered, never = await add_counterparties(owner_sessions, viewer.firm_id, ["Cov", "Never"])
    now = datetime.now(UTC)
    # Inserted out of order: the latest submission wins, not the latest row.
    await add_declaration(owner_sessions, viewer.firm_id, covered, "2026-06-30", now)
    await add_declaration(
        owner_sessions, viewer.firm_id, covered, "2025-06-30", now - timedelta(days=365)
    )
    # Newer, but not a submitted PI cover confirmation: ignored.
    await add_declaration(owner_sessions, viewer.firm_id, covered, "2030-01-01", now, key="fp")
    await add_declaration(owner_sessions, viewer.firm_id, covered, "2030-01-01", now, status="sent")
    # A declaration for a counterparty of another firm cannot leak into this one.
    other = await members.create()
    (theirs,) = await add_counterparties(owner_sessions, other.firm_id, ["Theirs"])
    await add_declaration(owner_sessions, other.firm_id, theirs, "2030-01-01", now)

    async def status(ident: uuid.UUID, day: date) -> dict[str, Any]:
        monkeypatch.setattr(counterparty_types, "today", lambda: day)
        body = await gql(client, COVER, {"id": str(ident)}, viewer)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]["counterparty"]["coverStatus"]
        return result

    until = "2026-06-30"
    # The window is 30 days by default and the end date is the last day of cover.
    assert await status(covered, date(2026, 5, 30)) == {"state": "COVERED", "until": until}
    assert await status(covered, date(2026, 5, 31)) == {"state": "EXPIRING", "until": until}
    assert await status(covered, date(2026, 6, 30)) == {"state": "EXPIRING", "until": until}
    assert await status(covered, date(2026, 7, 1)) == {"state": "LAPSED", "until": until}
    assert await status(never, date(2026, 5, 31)) == {"state": "UNKNOWN", "until": None}
    monkeypatch.setattr(settings, "cover_expiry_window_days", 90)
    assert await status(covered, date(2026, 5, 30)) == {"state": "EXPIRING", "until": until}
    body = await gql(client, COVER, {"id": str(theirs)}, viewer)
    assert codes(body) == ["NOT_FOUND"]


async def test_cover_lapses_at_the_end_of_its_last_day_in_london(
    client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy ending on 30 June has lapsed at 00:30 on 1 July in London, though it is still
    30 June in UTC (British Summer Time)."""
    viewer = await members.create(Role.VIEWER)
    (ident,) = await add_counterparties(owner_sessions, viewer.firm_id, ["Summer"])
    await add_declaration(owner_sessions, viewer.firm_id, ident, "2026-06-30", datetime.now(UTC))
    found = []
    for instant in (
        datetime(2026, 6, 30, 22, 30, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 30, tzinfo=UTC),
    ):
        monkeypatch.setattr(calendar, "now", lambda instant=instant: instant)
        body = await gql(client, COVER, {"id": str(ident)}, viewer)
        assert "errors" not in body, body
        found.append(body["data"]["counterparty"]["coverStatus"]["state"])
    assert found == ["EXPIRING", "LAPSED"]


async def test_a_renewal_confirmed_ahead_and_exclusions_show_in_cover_status(
    client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    viewer = await members.create(Role.VIEWER)
    renewed, ahead, gap = await add_counterparties(
        owner_sessions, viewer.firm_id, ["Renewed", "Ahead", "Gap"]
    )
    now = datetime.now(UTC)
    this_year = {"period_start": "2025-07-01", "covers_our_activities": False}
    next_year = {"period_start": "2026-07-01", "covers_our_activities": True}
    firm = viewer.firm_id
    await add_declaration(
        owner_sessions, firm, renewed, "2026-06-30", now - timedelta(days=300), **this_year
    )
    await add_declaration(owner_sessions, firm, renewed, "2027-06-30", now, **next_year)
    await add_declaration(owner_sessions, firm, ahead, "2027-06-30", now, **next_year)
    # Last year's policy ended in May; the renewal confirmed ahead starts in July.
    ended = {"period_start": "2025-06-01", "covers_our_activities": True}
    await add_declaration(
        owner_sessions, firm, gap, "2026-05-31", now - timedelta(days=300), **ended
    )
    await add_declaration(owner_sessions, firm, gap, "2027-06-30", now, **next_year)
    monkeypatch.setattr(counterparty_types, "today", lambda: date(2026, 6, 15))
    query = """query($id: UUID!) { counterparty(id: $id) {
      coverStatus { state until coversAllActivities startsOn } } }"""
    found = {}
    for ident in (renewed, ahead, gap):
        body = await gql(client, query, {"id": str(ident)}, viewer)
        assert "errors" not in body, body
        found[ident] = body["data"]["counterparty"]["coverStatus"]
    # This year's policy (with its exclusions) is in force, and the cover runs on into the
    # renewal: not expiring at the end of June.
    assert found[renewed] == {
        "state": "COVERED",
        "until": "2027-06-30",
        "coversAllActivities": False,
        "startsOn": None,
    }
    assert found[ahead] == {
        "state": "NOT_YET_IN_FORCE",
        "until": None,
        "coversAllActivities": None,
        "startsOn": "2026-07-01",
    }
    # A gap is a lapse, not cover yet to come: the counterparty is uncovered today.
    assert found[gap] == {
        "state": "LAPSED",
        "until": "2026-05-31",
        "coversAllActivities": None,
        "startsOn": "2026-07-01",
    }


_COUNTING: ContextVar[bool] = ContextVar("counting", default=False)


@contextmanager
def statements_sent(app: Starlette) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends on behalf of the block (the requests it
    makes carry its context, whatever task serves them): not the app's background work (the
    mail sender, say, woken by an earlier test), which shares the engine."""
    engine = app.state.coverproof.engine.sync_engine
    sent: list[str] = []

    def count(*args: Any) -> None:
        if _COUNTING.get():
            sent.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    event.listen(engine, "before_cursor_execute", count)
    counting = _COUNTING.set(True)
    try:
        yield sent
    finally:
        _COUNTING.reset(counting)
        event.remove(engine, "before_cursor_execute", count)


async def test_a_page_resolves_cover_status_in_one_statement_whatever_its_size(
    client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    app: Starlette,
) -> None:
    query = "{ counterparties(first: 20) { edges { node { name coverStatus { state } } } } }"
    counts = []
    for size in (5, 20):
        viewer = await members.create(Role.VIEWER)
        ids = await add_counterparties(
            owner_sessions, viewer.firm_id, [f"cp{i:02d}" for i in range(size)]
        )
        for ident in ids:
            await add_declaration(
                owner_sessions, viewer.firm_id, ident, "2099-01-01", datetime.now(UTC)
            )
        with statements_sent(app) as sent:
            body = await gql(client, query, None, viewer)
        assert "errors" not in body, body
        edges = body["data"]["counterparties"]["edges"]
        assert [edge["node"]["coverStatus"]["state"] for edge in edges] == ["COVERED"] * size
        assert sum("declarations" in statement for statement in sent) == 1
        counts.append(len(sent))
    assert counts[0] == counts[1]


async def test_sibling_fields_share_the_session_and_the_loader(
    client: httpx.AsyncClient, members: Members
) -> None:
    admin = await members.create()
    one = await create(client, admin, name="One Ltd")
    two = await create(client, admin, name="Two Ltd")
    # A list once in a query (app/schema/limits.ListsOnce); one item each beside it.
    query = """query($one: UUID!, $two: UUID!) {
      a: counterparty(id: $one) { name coverStatus { state } }
      b: counterparties { edges { node { name coverStatus { state } } } }
      c: counterparty(id: $two) { name }
    }"""
    body = await gql(client, query, {"one": one["id"], "two": two["id"]}, admin)
    assert "errors" not in body, body
    assert body["data"]["a"] == {"name": "One Ltd", "coverStatus": {"state": "UNKNOWN"}}
    assert [edge["node"]["name"] for edge in body["data"]["b"]["edges"]] == [
        "One Ltd",
        "Two Ltd",
    ]
    assert body["data"]["c"] == {"name": "Two Ltd"}


@pytest.mark.parametrize(
    "name",
    [
        "Acme \u202eLtd\u202c",  # a right-to-left override: shows as "Acme dtL"
        "Acme Ltd\nIMPORTANT: cover confirmed",  # a second line of its own
        "Acme\x1b[8m Ltd",  # a control character
        "\u200b",  # a name that shows as nothing
        "\u2800\u2800",  # and one drawn as nothing: blank Braille patterns
        "Acme\U000e0041 Ltd",  # a tag character: a letter no reader sees
    ],
)
async def test_a_counterparty_or_contact_name_is_shown_as_it_is_stored(
    client: httpx.AsyncClient, members: Members, name: str
) -> None:
    """Listed to every member and printed in the evidence packs given to the regulator: a name
    that reorders itself, breaks the line, or shows as nothing could pass for another."""
    admin = await members.create()
    for field in ("name", "contactName"):
        fields = {"name": "Plain Ltd", field: name}
        body = await gql(client, CREATE, {"input": {"kind": "OTHER", **fields}}, admin)
        assert codes(body) == ["BAD_USER_INPUT"], (field, body)
    made = await gql(client, CREATE, {"input": {"kind": "OTHER", "name": "Plain Ltd"}}, admin)
    ident = made["data"]["createCounterparty"]["counterparty"]["id"]
    updated = await gql(client, UPDATE, {"id": ident, "input": {"name": name}}, admin)
    assert codes(updated) == ["BAD_USER_INPUT"], updated
