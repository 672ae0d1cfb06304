"""Firms through the GraphQL API: one firm per session, roles enforced, input validated."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.actor import Role
from tests.factories import Members, codes, gql

FIRM = "{ firm { id name frn } }"
UPDATE = "mutation($input: FirmUpdateInput!) { updateFirm(input: $input) { firm { name frn } } }"


async def test_a_session_sees_only_its_own_firm_and_changes_only_it(
    client: httpx.AsyncClient, members: Members
) -> None:
    a = await members.create(name="Firm A Ltd")
    b = await members.create(name="Firm B Ltd")
    assert (await gql(client, FIRM, member=a))["data"]["firm"]["id"] == str(a.firm_id)
    body = await gql(client, UPDATE, {"input": {"name": "A Renamed Ltd"}}, a)
    assert body["data"]["updateFirm"]["firm"]["name"] == "A Renamed Ltd"
    assert (await gql(client, FIRM, member=b))["data"]["firm"] == {
        "id": str(b.firm_id),
        "name": "Firm B Ltd",
        "frn": "123456",
    }


async def test_viewer_shows_the_user_role_and_active_firm(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    body = await gql(
        client, "{ viewer { role user { email emailVerified } firm { id } } }", None, admin
    )
    assert body["data"]["viewer"] == {
        "role": "ADMIN",
        "user": {"email": admin.email, "emailVerified": True},
        "firm": {"id": str(owner.firm_id)},
    }


async def test_only_owners_and_admins_update_the_firm(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create(name="Roles Ltd")
    for role in (Role.VIEWER, Role.MEMBER):
        someone = await members.create(role, firm_id=owner.firm_id)
        body = await gql(client, UPDATE, {"input": {"name": "Hijacked"}}, someone)
        assert codes(body) == ["FORBIDDEN"]
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    body = await gql(client, UPDATE, {"input": {"frn": "7654321"}}, admin)
    assert body["data"]["updateFirm"]["firm"] == {"name": "Roles Ltd", "frn": "7654321"}


async def test_bad_input_is_refused_per_field_and_nothing_changes(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create(name="Valid Ltd")
    body = await gql(client, UPDATE, {"input": {"name": "  ", "frn": "12AB"}}, owner)
    assert codes(body) == ["BAD_USER_INPUT"]
    fields = {item["field"] for item in body["errors"][0]["extensions"]["fields"]}
    assert fields == {"name", "frn"}
    assert (await gql(client, FIRM, member=owner))["data"]["firm"]["name"] == "Valid Ltd"
    body = await gql(client, UPDATE, {"input": {"name": None}}, owner)
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_frn_null_clears_it(client: httpx.AsyncClient, members: Members) -> None:
    owner = await members.create()
    body = await gql(client, UPDATE, {"input": {"frn": None}}, owner)
    assert body["data"]["updateFirm"]["firm"]["frn"] is None


async def test_private_fields_need_a_verified_signed_in_member(
    client: httpx.AsyncClient, members: Members
) -> None:
    assert codes(await gql(client, FIRM)) == ["UNAUTHENTICATED"]
    assert codes(await gql(client, UPDATE, {"input": {"name": "Anon"}})) == ["UNAUTHENTICATED"]
    unverified = await members.create(verified=False)
    assert codes(await gql(client, FIRM, member=unverified)) == ["EMAIL_NOT_VERIFIED"]
    body = await gql(client, "{ viewer { role user { emailVerified } } }", member=unverified)
    assert body["data"] == {"viewer": {"role": "OWNER", "user": {"emailVerified": False}}}
    body = await gql(client, "{ viewer { firm { name } } }", member=unverified)
    assert codes(body) == ["EMAIL_NOT_VERIFIED"]


async def test_a_fragment_or_alias_cannot_sneak_past_the_gate(client: httpx.AsyncClient) -> None:
    body = await gql(client, "query { ...F } fragment F on Query { mine: firm { name } }")
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_expired_revoked_and_removed_sessions_stop_working(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    expired = await members.create(lifetime=timedelta(seconds=-1))
    assert codes(await gql(client, FIRM, member=expired)) == ["UNAUTHENTICATED"]
    revoked = await members.create()
    removed = await members.create(Role.MEMBER, firm_id=revoked.firm_id)
    idle = await members.create(Role.MEMBER, firm_id=revoked.firm_id)
    for member in (revoked, removed, idle):
        assert "errors" not in await gql(client, FIRM, member=member)
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("update sessions set revoked_at = now() where user_id = :u"),
            {"u": revoked.user_id},
        )
        await conn.execute(
            text("delete from memberships where user_id = :u"), {"u": removed.user_id}
        )
        await conn.execute(
            text(
                "update sessions set last_seen_at = now() - interval '31 minutes' "
                "where user_id = :u"
            ),
            {"u": idle.user_id},
        )
    for member in (revoked, removed, idle):
        assert codes(await gql(client, FIRM, member=member)) == ["UNAUTHENTICATED"]


async def test_a_firm_name_that_shows_as_nothing_is_refused(
    client: httpx.AsyncClient, members: Members
) -> None:
    """Every request mail opens with it: "\u200b asks you to complete: ..." from our address."""
    owner = await members.create()
    for name in ["\u200b", "\ufeff", "Acme\U000e0041\U000e0042 Ltd", "\u2800", "\u2800 \u2800"]:
        assert codes(await gql(client, UPDATE, {"input": {"name": name}}, owner)) == [
            "BAD_USER_INPUT"
        ], name
