"""Races: twenty concurrent redemptions of one single-use token, over and over.

Each round sends the same token twenty times at once, each from its own browser and IP: exactly
one wins and nineteen are told TOKEN_USED, every time, and the audit trail holds exactly one
success and nineteen refusals per token. Also: concurrent changes to one firm are recorded as
they were applied.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.auth import tokens
from app.auth.actor import Role
from app.db.models import Declaration
from app.db.tenant import tenant_transaction
from app.declarations import forms, links
from app.declarations.templates import snapshot
from app.main import create_app
from app.ratelimit.policies import Policy
from tests.browser import Browser, browser_for
from tests.conftest import Database, http_client, make_settings
from tests.declarations.test_loop import FORM, SUBMIT, valid_answers
from tests.factories import Member, Members
from tests.reliability.support import (
    FIT_AND_PROPER,
    UNLIMITED,
    error_codes,
    json_answer,
    serving,
    sized,
)

ROUNDS = sized(100, 1_000)
WAY = 20
MAGIC_SIGN_IN = "mutation($t: String!) { signInWithMagicLink(token: $t) { userId firmId } }"


async def _sent_declarations(
    owner_sessions: async_sessionmaker[AsyncSession], member: Member, secret_key: str, n: int
) -> dict[str, str]:
    """``n`` declarations in the state sendDeclaration leaves them (sent, with a live link),
    written as the firm's owner in its tenant context; returns token -> declaration id. Made
    directly rather than through the API so that a thousand rounds stay quick."""
    now = datetime.now(UTC)
    pinned = snapshot(
        FIT_AND_PROPER.spec,
        template_id=FIT_AND_PROPER.id,
        version=FIT_AND_PROPER.version,
        key=FIT_AND_PROPER.key,
    )
    made: dict[str, str] = {}
    rows = []
    for k in range(n):
        token, token_hash = links.new_token(secret_key)
        declaration_id = uuid.uuid4()
        made[token] = str(declaration_id)
        rows.append(
            {
                "id": declaration_id,
                "firm_id": member.firm_id,
                "template_id": FIT_AND_PROPER.id,
                "template_version": FIT_AND_PROPER.version,
                "recipient_name": f"Racer {k}",
                "recipient_email": f"racer-{k}-{declaration_id.hex[:8]}@example.test",
                "status": "sent",
                "created_by": member.user_id,
                "created_at": now,
                "sent_at": now,
                "reminder_count": 0,
                "token_hash": token_hash,
                "token_expires_at": now + timedelta(days=1),
            }
        )
    async with tenant_transaction(owner_sessions, member.firm_id, member.user_id) as session:
        key = await forms.keep(session, member.firm_id, pinned)
        await session.execute(insert(Declaration), [{**r, "form_key": key} for r in rows])
    return made


async def _race(app: Starlette, query: str, variables: dict[str, Any]) -> list[str]:
    """``WAY`` browsers (each its own IP) send the same operation at once; their outcomes."""
    browsers: list[Browser] = [browser_for(app) for _ in range(WAY)]
    try:
        responses = await asyncio.gather(*(b.post(query, variables) for b in browsers))
    finally:
        for b in browsers:
            await b.client.aclose()
    outcomes = []
    for response in responses:
        assert response.status_code == 200, response.text
        body = json_answer(response)
        outcomes.append("OK" if "errors" not in body else ",".join(error_codes(body)))
    return sorted(outcomes)


async def _actions(superuser_engine: AsyncEngine, firm_id: uuid.UUID) -> Counter[tuple[str, str]]:
    """(action, target id) -> how many entries, in the firm's chain."""
    async with superuser_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select action, target_id, count(*) from audit_log where firm_id = :f "
                "group by action, target_id"
            ),
            {"f": firm_id},
        )
        return Counter({(row[0], row[1]): row[2] for row in rows})


async def _chain_verifies(
    owner_sessions: async_sessionmaker[AsyncSession], member: Member
) -> chain.Verification:
    async with tenant_transaction(owner_sessions, member.firm_id, member.user_id) as session:
        return await chain.verify(session, member.firm_id)


async def test_twenty_concurrent_submissions_of_one_link_have_exactly_one_winner_every_time(
    auth_app: Starlette,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member = await members.create(Role.OWNER, name="Race Advisers Ltd")
    made = await _sent_declarations(
        owner_sessions, member, auth_app.state.coverproof.secret_key, ROUNDS
    )
    first = next(iter(made))
    reader = browser_for(auth_app)
    async with reader.client:
        form = (await reader.gql(FORM, {"t": first}))["data"]["recipientForm"]
    submission = {
        "answers": valid_answers(form["questions"]),
        "attestationAccepted": True,
        "signatureName": "Pat Doe",
    }
    async with asyncio.timeout(sized(120, 1200)):
        for n, token in enumerate(made):
            outcomes = await _race(auth_app, SUBMIT, {"t": token, "i": submission})
            assert outcomes == ["OK"] + ["TOKEN_USED"] * (WAY - 1), f"round {n}: {outcomes}"

    actions = await _actions(superuser_engine, member.firm_id)
    async with superuser_engine.connect() as conn:
        stored = await conn.execute(
            text(
                "select count(*) from declarations where firm_id = :f and status = 'submitted' "
                "and answers is not null and response_sha256 is not null"
            ),
            {"f": member.firm_id},
        )
        assert stored.scalar_one() == ROUNDS
    for declaration_id in made.values():
        assert actions["declaration.submitted", declaration_id] == 1, declaration_id
        # The losers are refused alike, and on the record once (once per reason and hour).
        assert actions["declaration.token_refused", declaration_id] == 1, declaration_id
    assert (await _chain_verifies(owner_sessions, member)).ok


async def test_twenty_concurrent_sign_ins_by_one_magic_link_have_exactly_one_winner(
    auth_app: Starlette,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member = await members.create(Role.OWNER, name="Magic Race Ltd")
    secret_key = auth_app.state.coverproof.secret_key
    rounds = sized(25, 250)
    async with tenant_transaction(owner_sessions, member.firm_id, member.user_id) as session:
        links_ = [
            await tokens.issue(
                session,
                secret_key,
                tokens.Purpose.MAGIC_LINK,
                timedelta(minutes=10),
                user_id=member.user_id,
                email=member.email,
            )
            for _ in range(rounds)
        ]
    async with asyncio.timeout(sized(60, 600)):
        for n, token in enumerate(links_):
            outcomes = await _race(auth_app, MAGIC_SIGN_IN, {"t": token})
            assert outcomes == ["OK"] + ["TOKEN_USED"] * (WAY - 1), f"round {n}: {outcomes}"

    actions = await _actions(superuser_engine, member.firm_id)
    user = str(member.user_id)
    assert actions["auth.sign_in.succeeded", user] == rounds
    # The losers' refusals are on the firm's chain to its hourly bound (each from a caller of
    # its own), the rest on the platform's alone (tests/auth/test_refusals_recorded.py).
    bound = int(Policy.ACCOUNT_REFUSALS_RECORDED.item.amount)
    assert rounds * (WAY - 1) > bound
    assert actions["auth.token.refused", user] == bound
    async with superuser_engine.connect() as conn:
        sessions = await conn.execute(
            text("select count(*) from sessions where user_id = :u"), {"u": member.user_id}
        )
        assert sessions.scalar_one() == rounds + 1  # one per winner, and the member's own
    assert (await _chain_verifies(owner_sessions, member)).ok


RENAME = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { name } } }"


async def test_concurrent_renames_of_one_firm_are_recorded_as_applied(
    database: Database,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """``firm.updated`` records each change as ``{"from": old, "to": new}``: read one after
    another, the entries must tell the story the firm's row went through, each ``from`` being
    the ``to`` before it, however many members rename the firm at the same time."""
    member = await members.create(Role.OWNER, name="Renamed Concurrently Ltd")
    settings = make_settings(database, tmp_path, db_pool_size=WAY, rate_limit_scale=UNLIMITED)
    acknowledged: list[str] = []
    async with serving(create_app(settings)) as app, http_client(app) as client:

        async def rename(name: str) -> None:
            response = await client.post(
                "/graphql",
                json={"query": RENAME, "variables": {"n": name}},
                headers=member.headers,
            )
            body = json_answer(response)
            assert body == {"data": {"updateFirm": {"firm": {"name": name}}}}, body
            acknowledged.append(name)

        async with asyncio.timeout(60):
            for n in range(sized(5, 50)):
                await asyncio.gather(*(rename(f"Name {n}.{k}") for k in range(WAY)))

    async with tenant_transaction(owner_sessions, member.firm_id, member.user_id) as session:
        changes = (
            (
                await session.execute(
                    text(
                        "select details -> 'changes' -> 'name' from audit_log "
                        "where firm_id = :f and action = 'firm.updated' order by seq"
                    ),
                    {"f": member.firm_id},
                )
            )
            .scalars()
            .all()
        )
        current = (
            await session.execute(
                text("select name from firms where id = :f"), {"f": member.firm_id}
            )
        ).scalar_one()
    assert sorted(c["to"] for c in changes) == sorted(acknowledged)
    assert current == changes[-1]["to"]
    told = [c["from"] for c in changes]
    happened = ["Renamed Concurrently Ltd", *(c["to"] for c in changes[:-1])]
    wrong = [(seq, t, h) for seq, (t, h) in enumerate(zip(told, happened, strict=True)) if t != h]
    assert not wrong, (
        f"{len(wrong)} of {len(changes)} entries name the wrong old value: {wrong[:3]}"
    )
