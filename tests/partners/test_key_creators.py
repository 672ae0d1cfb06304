"""A firm's API key dies with its creator's right to make one: removing an admin, or making
them less than an admin, revokes the keys they made, as it withdraws the invitations they sent.
A key acts for the firm with the scopes it was given, so an admin about to leave could make one
and keep reading (or writing) the firm's declarations after their removal."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.actor import Role
from tests.conftest import Database
from tests.factories import Members
from tests.partners import (
    codes,
    create_key,
    gql,
    load_trusted,
    partner_client,
    run_persisted,
    session_client,
    tagged,
)

LIST = """query List{tag}($first: Int!) { declarations(first: $first) { edges { node { id } } } }"""
REMOVE = "mutation($u: UUID!) { removeMember(userId: $u) { ok } }"
CHANGE = """mutation($i: MemberRoleChangeInput!) {
  changeMemberRole(input: $i) { member { role } } }"""


async def _removal_details(superuser: AsyncEngine, firm_id: object, action: str) -> dict[str, int]:
    async with superuser.connect() as conn:
        found = await conn.scalar(
            text(
                "select details from audit_log where firm_id = :f and action = :a "
                "order by seq desc limit 1"
            ),
            {"f": firm_id, "a": action},
        )
    assert isinstance(found, dict), found
    return found


@pytest.mark.parametrize("how", ["removed", "demoted", "owner made admin"])
async def test_an_admins_keys_end_when_they_may_no_longer_make_one(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    owner = await members.create(Role.OWNER)
    role = Role.OWNER if how == "owner made admin" else Role.ADMIN
    leaving = await members.create(role, firm_id=owner.firm_id)
    async with session_client(auth_app, leaving) as theirs:
        secret, _ = await create_key(theirs, ["DECLARATIONS_READ"])
    async with session_client(auth_app, owner) as ours:
        kept, _ = await create_key(ours, ["DECLARATIONS_READ"])
        async with partner_client(auth_app, secret) as partner:
            assert (await run_persisted(partner, listing, {"first": 1})).status_code == 200
            if how == "removed":
                done = await gql(ours, REMOVE, {"u": str(leaving.user_id)})
                action = "member.removed"
            else:
                to = "MEMBER" if how == "demoted" else "ADMIN"
                done = await gql(ours, CHANGE, {"i": {"userId": str(leaving.user_id), "role": to}})
                action = "member.role_changed"
            assert "errors" not in done, done
            refused = await run_persisted(partner, listing, {"first": 1})
        still_an_admin = how == "owner made admin"
        assert refused.status_code == (200 if still_an_admin else 401), refused.text
        if not still_an_admin:
            assert codes(refused.json()) == ["UNAUTHENTICATED"]
        details = await _removal_details(superuser_engine, owner.firm_id, action)
        assert details.get("api_keys", 0) == (0 if still_an_admin else 1), details
        # The firm's other keys go on.
        async with partner_client(auth_app, kept) as other:
            assert (await run_persisted(other, listing, {"first": 1})).status_code == 200
