"""The session cookie at the HTTP edge: unknown values are anonymous, a member's works."""

from __future__ import annotations

import httpx

from app.auth.sessions import COOKIE_NAME
from tests.factories import Members, codes, gql

FIRM = "{ firm { name } }"


def test_the_cookie_has_the_host_prefix() -> None:
    assert COOKIE_NAME == "__Host-cp_session"


async def test_an_unknown_cookie_is_anonymous(client: httpx.AsyncClient) -> None:
    body = await gql(client, FIRM, headers={"cookie": f"{COOKIE_NAME}=garbage"})
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_an_overlong_cookie_is_anonymous(client: httpx.AsyncClient) -> None:
    body = await gql(client, FIRM, headers={"cookie": f"{COOKIE_NAME}={'a' * 5000}"})
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_an_empty_cookie_is_anonymous(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ viewer { role } }", headers={"cookie": f"{COOKIE_NAME}="})
    assert body == {"data": {"viewer": None}}


async def test_a_members_cookie_serves_sibling_root_fields(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(client, "{ firm { name } viewer { role user { email } } }", member=owner)
    assert body == {
        "data": {
            "firm": {"name": "Acme Advisers Ltd"},
            "viewer": {"role": "OWNER", "user": {"email": owner.email}},
        }
    }


async def test_a_cookie_under_another_name_is_ignored(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(client, FIRM, headers={"cookie": f"cp_session={owner.cookie}"})
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_an_unverified_members_cookie_is_refused_private_fields(
    client: httpx.AsyncClient, members: Members
) -> None:
    unverified = await members.create(verified=False)
    body = await gql(client, "{ firm { name } viewer { role } }", member=unverified)
    assert body["data"] is None
    assert codes(body) == ["EMAIL_NOT_VERIFIED"]
