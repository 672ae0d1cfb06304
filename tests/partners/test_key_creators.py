"""A firm's API key dies with its creator's right to make one: removing an admin, or making
them less than an admin, revokes the keys they made, as it withdraws the invitations they sent.
A key acts for the firm with the scopes it was given, so an admin about to leave could make one
and keep reading (or writing) the firm's declarations after their removal."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.audit import chain
from app.auth.actor import ActorType, Role
from app.partners import keys
from tests.auth.test_members import ACCEPT, invited
from tests.browser import Browser, signed_up
from tests.conftest import Database
from tests.factories import Members, until_lock_waited
from tests.mail.smtp import SmtpServer
from tests.partners import (
    codes,
    count,
    create_key,
    declaration_input,
    gql,
    load_trusted,
    partner_client,
    run_persisted,
    session_client,
    tagged,
)

LIST = """query List{tag}($first: Int!) { declarations(first: $first) { edges { node { id } } } }"""
REMOVE = "mutation($u: UUID!) { removeMember(userId: $u) { ok } }"
CREATE = """mutation Create{tag}($i: DeclarationCreateInput!) {
  createDeclaration(input: $i) { declaration { id } } }"""
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


async def test_a_write_in_flight_when_its_keys_creator_is_removed_is_refused(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a member's request in flight when they are removed is refused when it comes to
    record (0035), so is a key's that the removal revoked: it wrote after ``member.removed``."""
    listing, create = tagged(LIST), tagged(CREATE)
    await load_trusted(monkeypatch, database, tmp_path, listing, create)
    owner = await members.create(Role.OWNER)
    leaving = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    async with session_client(auth_app, leaving) as theirs:
        secret, key_id = await create_key(theirs, ["DECLARATIONS_READ", "DECLARATIONS_WRITE"])
    reached, go_on = asyncio.Event(), asyncio.Event()
    record, record_on = chain.record, chain.record_on

    async def held(original: Any, *args: Any, **kwargs: Any) -> Any:
        if args[1].type is ActorType.API_KEY and args[2].value == "declaration.created":
            reached.set()
            await go_on.wait()
        return await original(*args, **kwargs)

    async with partner_client(auth_app, secret) as partner:
        assert (await run_persisted(partner, listing, {"first": 1})).status_code == 200  # 1st use
        monkeypatch.setattr(chain, "record", lambda *a, **k: held(record, *a, **k))
        monkeypatch.setattr(chain, "record_on", lambda *a, **k: held(record_on, *a, **k))
        writing = asyncio.ensure_future(run_persisted(partner, create, {"i": declaration_input()}))
        await asyncio.wait_for(reached.wait(), 30)
        async with session_client(auth_app, owner) as ours:
            removed = await gql(ours, REMOVE, {"u": str(leaving.user_id)})
        assert "errors" not in removed, removed
        go_on.set()
        written = await asyncio.wait_for(writing, 30)
    after = await count(
        superuser_engine,
        "select count(*) from audit_log where firm_id = :f and actor_id = :k "
        "and action = 'declaration.created' and seq > (select seq from audit_log "
        "where firm_id = :f and action = 'member.removed')",
        f=owner.firm_id,
        k=key_id,
    )
    assert after == 0, written.text
    assert written.status_code == 200
    assert codes(written.json()) == ["UNAUTHENTICATED"], written.text


async def test_a_keys_first_use_and_its_creators_removal_do_not_deadlock(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key's request holds its row (marked used), then takes the firm's chain lock; the
    removal took the lock, then the key's row (revoking it): a deadlock. It takes the row
    first now, and waits for the key's request, holding nothing of the firm's."""
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    owner = await members.create(Role.OWNER)
    leaving = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    async with session_client(auth_app, leaving) as theirs:
        secret, _ = await create_key(theirs, ["DECLARATIONS_READ"])
    reached, go_on = asyncio.Event(), asyncio.Event()
    first_use = keys.record_first_use

    async def held(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await go_on.wait()
        return await first_use(*args, **kwargs)

    monkeypatch.setattr(keys, "record_first_use", held)
    with caplog.at_level(logging.WARNING, logger="coverproof.graphql"):
        async with partner_client(auth_app, secret) as partner:
            reading = asyncio.ensure_future(run_persisted(partner, listing, {"first": 1}))
            await asyncio.wait_for(reached.wait(), 30)
            async with session_client(auth_app, owner) as ours:
                removing = asyncio.ensure_future(gql(ours, REMOVE, {"u": str(leaving.user_id)}))
                await until_lock_waited(superuser_engine)  # on the key's row
                go_on.set()
                removed = await asyncio.wait_for(removing, 30)
            await asyncio.wait_for(reading, 30)
    assert "errors" not in removed, removed
    deadlocks = [r.getMessage() for r in caplog.records if "deadlocked" in r.getMessage()]
    assert deadlocks == [], deadlocks


async def test_a_key_revoked_as_its_first_use_is_looked_up_is_refused_401(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup read the key live and waited to mark its first use for the revocation's
    row lock; the record then found it revoked: refused as any revoked key is, not a 500."""
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as ours:
        secret, key_id = await create_key(ours, ["DECLARATIONS_READ"])
    async with superuser_engine.connect() as revoking:  # as revokeApiKey holds the row
        await revoking.execute(
            text("update api_keys set revoked_at = now() where id = :k"), {"k": key_id}
        )
        async with partner_client(auth_app, secret) as partner:
            reading = asyncio.ensure_future(run_persisted(partner, listing, {"first": 1}))
            await until_lock_waited(superuser_engine)
            await revoking.commit()
            answered = await asyncio.wait_for(reading, 30)
    assert answered.status_code == 401, answered.text
    assert codes(answered.json()) == ["UNAUTHENTICATED"]


async def test_a_removal_revokes_only_the_keys_made_in_that_firm(
    browser: Browser, new_browser: Any, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """A user admin of two firms, removed from one: the keys they made there are revoked, the
    key they made in their other firm goes on (the revocation runs bound to the firm, under
    its row-level security)."""
    email = await signed_up(browser, smtp, firm="Own Ltd")
    _, own_key = await create_key(browser.client, ["DECLARATIONS_READ"])
    other = new_browser()
    await signed_up(other, smtp, firm="Other Ltd")
    token = await invited(other, smtp, email, "ADMIN")
    joined = await browser.gql(ACCEPT, {"t": token, "s": True})
    assert "errors" not in joined, joined
    user_id = joined["data"]["acceptInvitation"]["userId"]
    _, their_key = await create_key(browser.client, ["DECLARATIONS_READ"])
    assert "errors" not in await other.gql(REMOVE, {"u": user_id})
    query = text("select id::text, revoked_at is not null from api_keys where id::text in (:a, :b)")
    async with superuser_engine.connect() as conn:
        found = await conn.execute(query, {"a": own_key, "b": their_key})
    revoked = {row[0]: row[1] for row in found}
    assert revoked == {own_key: False, their_key: True}
