"""A row a change locks is read afresh. The ORM keeps one copy of each row per request; a copy
loaded earlier in the request (by an earlier field of the same document, say) may predate a
change another request has committed since, and a decision taken on it would be taken on
stale data: a second revocation, an audit entry saying a field changed "from" a value it no
longer held, an admin demoting someone who has become an owner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.actions import Action
from app.auth import members as member_service
from app.auth.actor import Actor, ActorType, Role
from app.counterparties import service as counterparty_service
from app.counterparties.schemas import CounterpartyUpdate
from app.db.models import AuditEntry, Membership
from app.db.tenant import tenant_transaction
from app.declarations import service as declaration_service
from app.errors import BadUserInput, Forbidden
from tests.declarations.test_loop import FIT
from tests.factories import Member, Members, gql

CREATE = """mutation($i: DeclarationCreateInput!) {
  createDeclaration(input: $i) { declaration { id status } } }"""
REVOKE = "mutation($id: UUID!) { revokeDeclaration(id: $id) { declaration { status } } }"
NEW_COUNTERPARTY = """mutation($i: CounterpartyCreateInput!) {
  createCounterparty(input: $i) { counterparty { id } } }"""
RENAME = """mutation($id: UUID!, $i: CounterpartyUpdateInput!) {
  updateCounterparty(id: $id, input: $i) { counterparty { name } } }"""
UPDATE_FIRM = """mutation($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { name } } }"""
CHANGE_ROLE = """mutation($i: MemberRoleChangeInput!) {
  changeMemberRole(input: $i) { member { role } } }"""


def as_actor(member: Member) -> Actor:
    return Actor(ActorType.USER, member.user_id, member.firm_id, member.role)


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]
    return found


async def test_a_declaration_revoked_meanwhile_is_not_revoked_twice(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    member = await members.create(Role.MEMBER)
    created = data(
        await gql(
            client,
            CREATE,
            {
                "i": {
                    "templateId": str(FIT.id),
                    "recipientName": "Pat",
                    "recipientEmail": "p@x.test",
                }
            },
            member,
        )
    )
    declaration_id = uuid.UUID(created["createDeclaration"]["declaration"]["id"])
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        early = await declaration_service.get_declaration(session, as_actor(member), declaration_id)
        assert early.status == "draft"
        data(await gql(client, REVOKE, {"id": str(declaration_id)}, member))  # another request
        with pytest.raises(BadUserInput, match="A revoked declaration cannot be revoked"):
            await declaration_service.revoke_declaration(session, as_actor(member), early.id)


async def test_a_counterparty_renamed_meanwhile_is_audited_from_its_new_name(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin = await members.create(Role.ADMIN)
    created = data(
        await gql(client, NEW_COUNTERPARTY, {"i": {"name": "First Ltd", "kind": "INSURER"}}, admin)
    )
    counterparty_id = uuid.UUID(created["createCounterparty"]["counterparty"]["id"])
    async with tenant_transaction(app_sessions, admin.firm_id, admin.user_id) as session:
        early = await counterparty_service.get_counterparty(
            session, as_actor(admin), counterparty_id
        )
        assert early.name == "First Ltd"
        renamed = {"id": str(counterparty_id), "i": {"name": "Second Ltd"}}
        data(await gql(client, RENAME, renamed, admin))  # another request
        update = CounterpartyUpdate.model_validate({"name": "Third Ltd"})
        await counterparty_service.update_counterparty(
            session, as_actor(admin), counterparty_id, update
        )
        latest = await session.execute(
            select(AuditEntry.details)
            .where(AuditEntry.target_id == str(counterparty_id))
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        )
        assert latest.scalar_one()["changes"]["name"] == {"from": "Second Ltd", "to": "Third Ltd"}


async def test_an_admin_cannot_demote_a_member_who_has_become_an_owner_meanwhile(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await members.create(Role.OWNER)
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    other = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    async with tenant_transaction(app_sessions, admin.firm_id, admin.user_id) as session:
        early = await session.get(Membership, (admin.firm_id, other.user_id))
        assert early is not None
        assert early.role == Role.MEMBER.value
        promote = {"i": {"userId": str(other.user_id), "role": "OWNER"}}
        data(await gql(client, CHANGE_ROLE, promote, owner))  # another request
        with pytest.raises(Forbidden):
            await member_service.change_member_role(
                session, as_actor(admin), other.user_id, Role.VIEWER
            )


async def test_an_admin_demoted_meanwhile_no_longer_acts_as_an_admin(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The acting admin's own role is read again under the firm's lock: their session was
    looked up with the role they held when the request began."""
    owner = await members.create(Role.OWNER)
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    other = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    demote = {"i": {"userId": str(admin.user_id), "role": "VIEWER"}}
    data(await gql(client, CHANGE_ROLE, demote, owner))  # after the admin's request began
    for act in (
        lambda session: member_service.change_member_role(
            session, as_actor(admin), other.user_id, Role.VIEWER
        ),
        lambda session: member_service.remove_member(session, as_actor(admin), other.user_id),
    ):
        async with tenant_transaction(app_sessions, admin.firm_id, admin.user_id) as session:
            with pytest.raises(Forbidden):
                await act(session)


async def held_at_record(
    monkeypatch: pytest.MonkeyPatch, action: Action, change: Awaitable[dict[str, Any]]
) -> Callable[[Awaitable[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]:
    """Start ``change`` and hold it, its row locked, just before it appends ``action`` to the
    firm's chain; the returned function runs another request meanwhile, lets the change go on,
    and returns both answers, the other request's first. The other must not wait for it."""
    held, go = asyncio.Event(), asyncio.Event()
    record = chain.record

    async def paused(session: AsyncSession, actor: Actor, what: Action, *args: Any) -> Any:
        if what is action:
            held.set()
            await go.wait()
        return await record(session, actor, what, *args)

    monkeypatch.setattr(chain, "record", paused)
    changing = asyncio.ensure_future(change)
    await held.wait()

    async def meanwhile(other: Awaitable[dict[str, Any]]) -> list[dict[str, Any]]:
        running = asyncio.ensure_future(other)
        done, _ = await asyncio.wait({running}, timeout=5)
        go.set()
        answers = [await running, await changing]
        assert running in done, ("the other request waited for the locked row", answers)
        return answers

    return meanwhile


async def test_a_firm_being_updated_leaves_its_members_changes_to_run(
    client: httpx.AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every entry of the firm's chain, and most rows, refer to the firm's row: locked as a
    change that deletes it would lock it (FOR UPDATE), a rename held them all up, and the one
    holding the chain's lock as it waited deadlocked with the rename (a 500)."""
    admin = await members.create(Role.ADMIN)
    rename = gql(client, UPDATE_FIRM, {"i": {"name": "Renamed Ltd"}}, admin)
    meanwhile = await held_at_record(monkeypatch, Action.FIRM_UPDATED, rename)
    key = str(uuid.uuid4())  # so it takes the chain's lock first
    new = {"i": {"name": "Meanwhile Ltd", "kind": "INSURER", "idempotencyKey": key}}
    created, renamed = await meanwhile(gql(client, NEW_COUNTERPARTY, new, admin))
    assert data(created)["createCounterparty"]["counterparty"]["id"]
    assert data(renamed)["updateFirm"]["firm"]["name"] == "Renamed Ltd"


async def test_a_counterparty_being_updated_leaves_declarations_for_it_to_be_created(
    client: httpx.AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declaration refers to its counterparty's row; one created with an idempotency key
    takes the firm's chain lock first, and deadlocked with the update holding that row."""
    admin = await members.create(Role.ADMIN)
    new = {"i": {"name": "Insurer Ltd", "kind": "INSURER"}}
    created = data(await gql(client, NEW_COUNTERPARTY, new, admin))
    counterparty_id = created["createCounterparty"]["counterparty"]["id"]
    rename = gql(client, RENAME, {"id": counterparty_id, "i": {"name": "Renamed Ltd"}}, admin)
    meanwhile = await held_at_record(monkeypatch, Action.COUNTERPARTY_UPDATED, rename)
    declaration = {
        "templateId": str(FIT.id),
        "recipientName": "Pat",
        "recipientEmail": "p@x.test",
        "counterpartyId": counterparty_id,
        "idempotencyKey": str(uuid.uuid4()),
    }
    declared, renamed = await meanwhile(gql(client, CREATE, {"i": declaration}, admin))
    assert data(declared)["createDeclaration"]["declaration"]["status"] == "DRAFT"
    assert data(renamed)["updateCounterparty"]["counterparty"]["name"] == "Renamed Ltd"


def test_no_row_is_locked_as_if_it_were_to_be_deleted() -> None:
    """The app changes rows and keeps their keys: FOR NO KEY UPDATE, which rows referring to
    them (inserted with KEY SHARE) do not wait for. Plain FOR UPDATE is for a delete."""
    app = Path(__file__).resolve().parents[1] / "app"
    plain = [
        f"{path.relative_to(app)}:{number}"
        for path in sorted(app.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ("with_for_update" in line and "key_share" not in line)
        or "for update" in line.lower().replace("no key update", "")
    ]
    assert plain == []
