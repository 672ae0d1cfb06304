"""Verifying or exporting a firm's whole chain reads every entry, and an export is itself
recorded: one request runs each at most once, and each caller takes a bounded number a
minute. Under aliases one request built thirty exports (thirty times the bound on what a
request holds) or verified the chain thirty times; and exports, queries, were not counted by
the mutation limit, so a looping admin or key appended `audit.exported` entries without end."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.actions import Action
from app.auth.actor import Role
from app.db.models import AuditEntry
from app.db.tenant import tenant_transaction
from app.ratelimit.policies import Policy
from app.schema.limits import MAX_ALIASES
from tests.factories import Members, codes, gql

EXPORT = "exportAuditLog { jsonl }"
VERIFY = "verifyAuditChain { ok }"


async def _exports(sessions: async_sessionmaker[AsyncSession], firm_id: object) -> int:
    async with tenant_transaction(sessions, firm_id) as session:
        query = select(func.count()).where(AuditEntry.action == Action.AUDIT_EXPORTED.value)
        return int(await session.scalar(query) or 0)


@pytest.mark.parametrize(
    ("document", "name"),
    [
        (f"{{ a: {EXPORT} b: {EXPORT} }}", "exportAuditLog"),
        (
            "{ " + " ".join(f"v{n}: {VERIFY}" for n in range(MAX_ALIASES)) + " }",
            "verifyAuditChain",
        ),
        (f"{{ a: {EXPORT} ...F }} fragment F on Query {{ b: {EXPORT} }}", "exportAuditLog"),
        (f"{{ a: {VERIFY} ... on Query {{ b: {VERIFY} }} }}", "verifyAuditChain"),
    ],
    ids=["exports", "verifications", "named-fragment", "inline-fragment"],
)
async def test_one_request_reads_the_whole_chain_once(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    document: str,
    name: str,
) -> None:
    """Every run of the field after the first is refused, and with it the request (the
    fields are non-null), which rolls back: nothing is recorded."""
    admin = await members.create(Role.ADMIN)
    body = await gql(client, document, None, admin)
    assert set(codes(body)) == {"BAD_USER_INPUT"}, body
    assert {e["message"] for e in body["errors"]} == {f"Ask for {name} once in a request."}
    assert body["data"] is None
    assert await _exports(app_sessions, admin.firm_id) == 0


@pytest.mark.parametrize(
    "document",
    [
        f"{{ {VERIFY} {VERIFY} }}",  # one field, written twice: GraphQL runs it once
        f"{{ {VERIFY} ...F }} fragment F on Query {{ {VERIFY} }}",
        "query($v: Boolean!) { a: verifyAuditChain @include(if: $v) { ok } "
        "b: verifyAuditChain @skip(if: $v) { ok } }",
    ],
    ids=["merged", "merged-through-a-fragment", "one-of-two-skipped"],
)
async def test_a_field_written_twice_but_run_once_is_answered(
    client: httpx.AsyncClient, members: Members, document: str
) -> None:
    admin = await members.create(Role.ADMIN)
    body = await gql(client, document, {"v": True} if "$v" in document else None, admin)
    assert "errors" not in body, body
    assert [value["ok"] for value in body["data"].values()] == [True]


async def test_one_of_each_side_by_side_is_answered(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await members.create(Role.ADMIN)
    body = await gql(client, f"{{ {EXPORT} {VERIFY} }}", None, admin)
    assert "errors" not in body, body
    assert await _exports(app_sessions, admin.firm_id) == 1


async def test_a_caller_takes_a_bounded_number_of_whole_chain_reads_a_minute(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Exports and verifications count together, per caller: another admin of the firm is not
    held back."""
    admin = await members.create(Role.ADMIN)
    limit = int(Policy.WHOLE_CHAIN_READS_PER_CALLER.item.amount)
    exports = limit // 2
    answers = [codes(await gql(client, f"{{ {EXPORT} }}", None, admin)) for _ in range(exports)]
    answers += [
        codes(await gql(client, f"{{ {VERIFY} }}", None, admin)) for _ in range(limit - exports)
    ]
    assert answers == [[]] * limit
    assert codes(await gql(client, f"{{ {EXPORT} }}", None, admin)) == ["RATE_LIMITED"]
    assert codes(await gql(client, f"{{ {VERIFY} }}", None, admin)) == ["RATE_LIMITED"]
    assert (
        await _exports(app_sessions, admin.firm_id) == exports
    )  # the refused one recorded nothing
    other = await members.create(Role.ADMIN, firm_id=admin.firm_id)
    assert codes(await gql(client, f"{{ {EXPORT} }}", None, other)) == []
