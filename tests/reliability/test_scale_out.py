"""Scale-out: two real server processes (``coverproof serve``) on one database and one Redis.

The server keeps no state of its own: a session made through one process works on the other,
rate limits are counted once across both (bursts of five times a limit, aliased fields in one
document, batched requests), and a client's ``X-Forwarded-For`` is ignored when its peer is not
a trusted proxy. Clients talk over loopback only, each from its own 127.x.y.z address (Linux
routes all of 127/8 to the loopback interface), which is the address the servers see.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.actor import Role
from app.auth.passwords import hash_password
from app.auth.sessions import COOKIE_NAME
from app.db.models import User
from app.db.tenant import tenant_transaction
from app.declarations.templates import load_builtins
from app.partners.documents import document_id
from app.ratelimit import Policy
from tests.browser import MAGIC, PASSWORD, SIGN_IN, SIGN_UP, VERIFY, link_token, loopback_ip
from tests.conftest import Database, new_signing_key_pem
from tests.factories import Member, Members
from tests.mail.smtp import SmtpServer, free_port
from tests.partners import trust
from tests.reliability.support import REDIS_URL, error_codes, json_answer, unique_email

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
IP_CEILING = 20  # COVERPROOF_IP_REQUESTS_PER_MINUTE on both processes
SIGN_IN_LIMIT = 10  # Policy.SIGN_IN_PER_EMAIL_AND_IP: 10/minute
START_TIMEOUT = 60
FIRM = "{ firm { id name } }"
SIGN_OUT = "mutation { signOut { ok } }"


def _redis_answers() -> None:
    """Fail (never skip) with a clear message when Redis is not there."""
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            sock.settimeout(2)
            answer = sock.recv(64)
    except OSError as error:
        answer = str(error).encode()
    if not answer.startswith(b"+PONG"):
        pytest.fail(
            f"Redis does not answer at {REDIS_URL} ({answer!r}); the scale-out tests need a real "
            "one. Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
            '--save "" --appendonly no (or set COVERPROOF_TEST_REDIS_URL).'
        )


@dataclass(frozen=True)
class Servers:
    urls: tuple[str, str]

    def client(self, n: int, ip: str | None = None) -> httpx.AsyncClient:
        """A client of server ``n`` (0 or 1) from its own loopback address."""
        transport = httpx.AsyncHTTPTransport(local_address=ip or loopback_ip())
        return httpx.AsyncClient(transport=transport, base_url=self.urls[n], timeout=30)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server at {url} exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server at {url} did not answer /healthz in {START_TIMEOUT} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def servers(
    database: Database, smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """Two ``coverproof serve`` processes with the same secret key, signing key, data
    directory, database and Redis."""
    _redis_answers()
    data_dir = tmp_path_factory.mktemp("scale-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERPROOF_")}
    env.update(
        {
            "COVERPROOF_DATABASE_URL": database.app_url,
            "COVERPROOF_SECRET_KEY": secrets.token_urlsafe(48),
            "COVERPROOF_AUDIT_SIGNING_KEY": new_signing_key_pem(),
            "COVERPROOF_DATA_DIR": str(data_dir),
            "COVERPROOF_RATE_LIMIT_STORAGE": REDIS_URL,
            # Counted apart from earlier runs' (their hits may still be in the window).
            "COVERPROOF_RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex}",
            "COVERPROOF_SMTP_URL": smtp.url,
            "COVERPROOF_PUBLIC_URL": "https://testserver",
            "COVERPROOF_IP_REQUESTS_PER_MINUTE": str(IP_CEILING),
        }
    )
    coverproof = Path(sys.executable).with_name("coverproof")
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for n in range(2):
            port = free_port()
            log = data_dir / f"server-{n}.log"
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(  # noqa: S603 (our own entry point, fixed arguments)
                        [str(coverproof), "serve", "--host", "127.0.0.1", "--port", str(port)],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        for process, url, n in zip(processes, urls, range(2), strict=True):
            _wait_healthy(process, url, data_dir / f"server-{n}.log")
        yield Servers((urls[0], urls[1]))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


async def _post(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    cookie: str | None = None,
) -> tuple[httpx.Response, dict[str, Any]]:
    headers = {"cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    return response, json_answer(response)


def _session_cookie(response: httpx.Response) -> str:
    """The session cookie's value from Set-Cookie (it is Secure, so no jar sends it over the
    plain-HTTP loopback; the tests send it by hand)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE_NAME:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {response.headers}")


async def _password_member(
    members: Members, owner_sessions: async_sessionmaker[AsyncSession]
) -> Member:
    member = await members.create(Role.OWNER, name="Scale-out Ltd")
    async with tenant_transaction(owner_sessions, member.firm_id, member.user_id) as session:
        await session.execute(
            update(User)
            .where(User.id == member.user_id)
            .values(password_hash=await hash_password(PASSWORD))
        )
    return member


async def _count(engine: AsyncEngine, sql: str, **params: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_a_session_made_on_one_process_works_on_the_other(
    servers: Servers, smtp: SmtpServer
) -> None:
    ip = loopback_ip()
    email = unique_email("scale-out")
    async with servers.client(0, ip) as one, servers.client(1, ip) as two:
        variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Two Ltd"}}
        _, body = await _post(one, SIGN_UP, variables)
        assert body["data"]["signUp"]["accepted"] is True, body
        token = await link_token(smtp, email, "Confirm your email")
        # The link, on the other process.
        response, body = await _post(two, VERIFY, {"t": token, "p": PASSWORD})
        assert body["data"]["verifyEmail"]["emailVerified"] is True, body
        firm_id = body["data"]["verifyEmail"]["firmId"]
        first = _session_cookie(response)

        _, body = await _post(one, FIRM, cookie=first)
        assert body == {"data": {"firm": {"id": firm_id, "name": "Two Ltd"}}}
        response, body = await _post(one, SIGN_IN, {"e": email, "p": PASSWORD})
        assert body["data"]["signInWithPassword"]["firmId"] == firm_id, body
        second = _session_cookie(response)
        _, body = await _post(two, FIRM, cookie=second)
        assert body == {"data": {"firm": {"id": firm_id, "name": "Two Ltd"}}}

        # Signing out on one process ends the session on both; the other session lives on.
        _, body = await _post(two, SIGN_OUT, cookie=second)
        assert body == {"data": {"signOut": {"ok": True}}}
        for client in (one, two):
            _, body = await _post(client, FIRM, cookie=second)
            assert error_codes(body) == ["UNAUTHENTICATED"], body
            _, body = await _post(client, FIRM, cookie=first)
            assert body["data"]["firm"]["id"] == firm_id, body

    # Both processes send mail from the one outbox: the confirmation went out exactly once.
    await asyncio.sleep(1)
    confirmations = [m for m in smtp.to(email) if "Confirm your email" in str(m["subject"])]
    assert len(confirmations) == 1


async def test_a_sign_in_burst_of_five_times_the_limit_over_both_processes_accepts_the_limit(
    servers: Servers,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member = await _password_member(members, owner_sessions)
    # One caller's burst (the limit is per address and caller; tests/auth shows another caller
    # unaffected, and the per-address ceiling).
    ip = loopback_ip()
    clients = [servers.client(n % 2, ip) for n in range(5 * SIGN_IN_LIMIT)]
    try:
        answers = await asyncio.gather(
            *(_post(c, SIGN_IN, {"e": member.email, "p": PASSWORD}) for c in clients)
        )
    finally:
        for c in clients:
            await c.aclose()
    outcomes = sorted("OK" if "errors" not in b else ",".join(error_codes(b)) for _, b in answers)
    assert outcomes == ["OK"] * SIGN_IN_LIMIT + ["RATE_LIMITED"] * (4 * SIGN_IN_LIMIT)
    sessions = "select count(*) from sessions where user_id = :u"
    assert await _count(superuser_engine, sessions, u=member.user_id) == SIGN_IN_LIMIT + 1


CREATE = """mutation Create($i: DeclarationCreateInput!) {
  createDeclaration(input: $i) { declaration { id } } }"""


async def test_a_mutation_burst_of_five_times_the_limit_over_both_processes_and_both_paths(
    servers: Servers, members: Members, superuser_engine: AsyncEngine
) -> None:
    """One member's creates, five times the per-user limit at once, spread over both processes,
    half as query text (the executor) and half as a trusted persisted document (the write lane,
    once each process holds it): the limit is counted once, in Redis, whichever path counts."""
    limit = int(Policy.MUTATIONS_PER_USER.item.amount)
    member = await members.create()
    await trust(superuser_engine, [CREATE])
    draft = {"templateId": str(FIT.id), "recipientName": "Burst", "recipientEmail": "b@e.test"}
    bodies: list[dict[str, Any]] = [
        {"query": CREATE, "variables": {"i": draft}},
        {"documentId": "sha256:" + document_id(CREATE), "variables": {"i": draft}},
    ]
    gate = asyncio.Semaphore(100)  # bursts of a hundred at once, all within the minute

    async def create(n: int) -> dict[str, Any]:
        async with gate, servers.client(n % 2) as client:
            response = await client.post(
                "/graphql", json=bodies[(n // 2) % 2], headers=member.headers
            )
            return json_answer(response)

    answers = await asyncio.gather(*(create(n) for n in range(5 * limit)))
    outcomes = sorted("OK" if "errors" not in b else ",".join(error_codes(b)) for b in answers)
    assert outcomes == ["OK"] * limit + ["RATE_LIMITED"] * (4 * limit)
    firm = {"f": member.firm_id}
    made = "select count(*) from declarations where firm_id = :f"
    assert await _count(superuser_engine, made, **firm) == limit
    entries = "select count(*) from audit_log where firm_id = :f and action = 'declaration.created'"
    assert await _count(superuser_engine, entries, **firm) == limit


async def test_aliased_fields_in_one_document_each_count_against_the_limit(
    servers: Servers,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """25 aliased invitations of one address: five ran and the sixth was refused (5 emails an
    hour per address and caller; mutation fields run one after another, and a failed one stops
    the rest). The document failed, so nothing was sent, but the five were counted, in Redis,
    for the other process too. Aliased sign-ins and sign-in link requests are refused before
    any runs (each must be alone), so they count nothing: the whole limit is still there after
    them."""
    member = await _password_member(members, owner_sessions)
    invited = unique_email("aliased")
    invite = "inviteMember(input: {email: $e, role: MEMBER}) { ok }"
    invites = " ".join(f"a{k}: {invite}" for k in range(25))
    links = " ".join(f"a{k}: requestMagicLink(email: $e) {{ accepted }}" for k in range(25))
    sign_ins = " ".join(
        f"a{k}: signInWithPassword(email: $e, password: $p) {{ userId }}" for k in range(25)
    )
    ip = loopback_ip()
    async with servers.client(0, ip) as one, servers.client(1, ip) as two:
        document = f"mutation($e: String!) {{ {invites} }}"
        _, body = await _post(one, document, {"e": invited}, member.cookie)
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
            (["a5"], "RATE_LIMITED")
        ], body
        assert body["data"] is None
        _, body = await _post(
            two, f"mutation($e: String!) {{ {invite} }}", {"e": invited}, member.cookie
        )
        assert error_codes(body) == ["RATE_LIMITED"], body

        _, body = await _post(one, f"mutation($e: String!) {{ {links} }}", {"e": member.email})
        assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}, body
        for n in range(5):  # the whole limit, as if the aliased ones had never been sent
            _, body = await _post(two if n % 2 else one, MAGIC, {"e": member.email})
            assert "errors" not in body, (n, body)

        variables = {"e": member.email, "p": PASSWORD}
        document = f"mutation($e: String!, $p: String!) {{ {sign_ins} }}"
        response, body = await _post(one, document, variables)
        assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}, body
        assert "set-cookie" not in response.headers
        outcomes = []
        for n in range(SIGN_IN_LIMIT + 1):
            _, body = await _post(two if n % 2 else one, SIGN_IN, variables)
            outcomes.append(error_codes(body) or ["OK"])
        assert outcomes == [["OK"]] * SIGN_IN_LIMIT + [["RATE_LIMITED"]]
    queued = "select count(*) from mail_outbox where to_address = :e"
    assert await _count(superuser_engine, queued, e=invited) == 0


async def test_a_batched_request_is_refused_whole_and_counts_nothing(
    servers: Servers,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member = await _password_member(members, owner_sessions)
    batch = [{"query": SIGN_IN, "variables": {"e": member.email, "p": PASSWORD}}] * 25
    ip = loopback_ip()
    async with servers.client(0, ip) as one:
        response = await one.post("/graphql", json=batch)
        assert response.status_code == 400
        assert error_codes(json_answer(response)) == ["BAD_REQUEST"]
        assert "set-cookie" not in response.headers
    # None of it was counted: the full limit is still there, and no more than it.
    clients = [servers.client(n % 2, ip) for n in range(SIGN_IN_LIMIT + 1)]
    try:
        answers = await asyncio.gather(
            *(_post(c, SIGN_IN, {"e": member.email, "p": PASSWORD}) for c in clients)
        )
    finally:
        for c in clients:
            await c.aclose()
    outcomes = sorted("OK" if "errors" not in b else ",".join(error_codes(b)) for _, b in answers)
    assert outcomes == ["OK"] * SIGN_IN_LIMIT + ["RATE_LIMITED"]
    sessions = "select count(*) from sessions where user_id = :u"
    assert await _count(superuser_engine, sessions, u=member.user_id) == SIGN_IN_LIMIT + 1


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_ip_bucket(
    servers: Servers,
) -> None:
    """From 127.0.0.1 itself (the address uvicorn trusts by default when proxy headers are
    on): each request claims another client address, one of them a real client's; the ceiling
    still counts every request against 127.0.0.1, across both processes."""
    victim = loopback_ip()
    spoofs = [victim, "203.0.113.7", f"{victim}, 198.51.100.{uuid.uuid4().int % 250}"]
    statuses = []
    async with servers.client(0, "127.0.0.1") as one, servers.client(1, "127.0.0.1") as two:
        for n in range(IP_CEILING + 5):
            spoof = spoofs[n % 3] if n % 4 else f"192.0.2.{n}"
            response = await (one if n % 2 else two).post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"x-forwarded-for": spoof},
            )
            body = json_answer(response)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert error_codes(body) == ["RATE_LIMITED"]
                assert 1 <= int(response.headers["retry-after"]) <= 60
            else:
                assert body == {"data": {"__typename": "Query"}}
    assert statuses == [200] * IP_CEILING + [429] * 5
    # The address named in the spoofed headers was never charged: its own requests pass.
    async with servers.client(0, victim) as real:
        response = await real.post("/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 200
