"""Faults: PostgreSQL restarted under load, on a server of the test's own.

While requests keep arriving, the database is stopped: ``/readyz`` turns 503 and requests get a
clean JSON error; it is started again: ``/readyz`` turns 200 and, on the same app instance
(no restart), every request from then on succeeds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.auth.actor import Role
from app.db.engine import create_engine, session_factory
from app.main import create_app
from app.partners.documents import document_id
from tests.conftest import http_client, make_settings
from tests.factories import Member, Members
from tests.reliability.conftest import Restartable
from tests.reliability.support import (
    UNLIMITED,
    error_codes,
    json_answer,
    serving,
    sized,
    wait_until,
)

WORKERS = 4
POOL = 4
DOWN_SECONDS = sized(1, 5)  # how long the database stays down
AFTER_SECONDS = sized(1, 10)  # how long the load runs once it is back

FIRM = "{ firm { id } }"
# A persisted page, which the fast path's read lane answers on a pool of its own.
PAGE = "query Page { declarations(first: 5) { edges { node { id } } } }"
APQ = {"persistedQuery": {"version": 1, "sha256Hash": document_id(PAGE)}}
RENAME = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { name } } }"


@dataclass
class Answer:
    sent_at: float
    done_at: float
    ok: bool


@dataclass
class Load:
    client: httpx.AsyncClient
    member: Member
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, n: int) -> None:
        while not self.stop.is_set():
            sent_at = time.monotonic()
            if n % 2:
                name = f"Restart {uuid.uuid4().hex}"
                payload = {"query": RENAME, "variables": {"n": name}}
            elif n % 4 == 2:
                payload = {"extensions": APQ}
            else:
                payload = {"query": FIRM}
            response = await self.client.post("/graphql", json=payload, headers=self.member.headers)
            body = json_answer(response)
            ok = response.status_code == 200 and "errors" not in body
            if not ok:
                assert error_codes(body) == ["INTERNAL_SERVER_ERROR"], body
                assert response.status_code in (200, 500), response.status_code
            self.answers.append(Answer(sent_at, time.monotonic(), ok))
            await asyncio.sleep(0.01)


async def _ready(client: httpx.AsyncClient) -> int:
    response = await client.get("/readyz")
    assert response.headers["content-type"] == "application/json", response.text
    return response.status_code


async def test_readyz_goes_red_then_green_and_requests_resume_without_a_restart(
    restartable_postgres: Restartable, tmp_path: Path
) -> None:
    pg = restartable_postgres
    owner = create_engine(pg.database.owner_url, pool_size=1)
    try:
        member = await Members(session_factory(owner)).create(Role.OWNER)
    finally:
        await owner.dispose()
    settings = make_settings(
        pg.database, tmp_path / "data", db_pool_size=POOL, rate_limit_scale=UNLIMITED
    )
    async with serving(create_app(settings)) as app, http_client(app) as client:
        assert await _ready(client) == 200
        registered = await client.post(
            "/graphql", json={"query": PAGE, "extensions": APQ}, headers=member.headers
        )
        assert "errors" not in json_answer(registered), registered.text
        load = Load(client, member)
        lane_before = app.state.coverproof.fast_path.lane
        async with asyncio.timeout(120):
            workers = asyncio.gather(*(load.worker(n) for n in range(WORKERS)))
            try:
                await asyncio.sleep(0.3)
                stopped_at = time.monotonic()
                await asyncio.to_thread(pg.stop)
                await wait_until(lambda: _is(client, 503), 10, "/readyz 503 while down")
                red_at = time.monotonic()
                await asyncio.sleep(DOWN_SECONDS)
                assert await _ready(client) == 503
                restart_at = time.monotonic()
                await asyncio.to_thread(pg.start)
                await wait_until(lambda: _is(client, 200), 30, "/readyz 200 once back")
                green_at = time.monotonic()
                await asyncio.sleep(AFTER_SECONDS)
            finally:
                load.stop.set()
                await workers
        assert await _ready(client) == 200
        # The lane answered before the stop and again once the database was back.
        lane_after_restart = app.state.coverproof.fast_path.lane
        response = await client.post("/graphql", json={"extensions": APQ}, headers=member.headers)
        assert "errors" not in json_answer(response), response.text
        assert app.state.coverproof.fast_path.lane == lane_after_restart + 1
        assert lane_after_restart > lane_before

    before = [a.ok for a in load.answers if a.done_at < stopped_at]
    down = [a.ok for a in load.answers if red_at <= a.sent_at and a.done_at < restart_at]
    after = [a.ok for a in load.answers if a.sent_at >= green_at]
    assert len(before) >= WORKERS
    assert all(before)
    assert len(down) >= WORKERS
    assert not any(down)  # every request failed, cleanly, while the database was down
    assert len(after) >= 10
    assert all(after)  # and every request succeeds once it is ready again


async def _is(client: httpx.AsyncClient, status: int) -> bool:
    return await _ready(client) == status
