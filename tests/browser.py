"""A browser-like client through HTTP, with mail delivered to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette

from app.auth.sessions import COOKIE_NAME
from app.main import create_app
from tests.conftest import Database, make_settings, started
from tests.mail.smtp import SmtpServer, running_smtp_server

PASSWORD = "correct horse battery staple 42"
TOKEN_IN_LINK = re.compile(r"#token=([^\s\"<]+)")


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
async def auth_app(
    database: Database, smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    settings = make_settings(database, tmp_path_factory.mktemp("auth"), smtp_url=smtp.url)
    async for running in started(create_app(settings)):
        yield running


def loopback_ip() -> str:
    """A fresh 127.x address per client, so per-IP limits of one test never touch another."""
    a, b, c = (secrets.randbelow(254) + 1 for _ in range(3))
    return f"127.{a}.{b}.{c}"


@dataclass
class Browser:
    """One browser: its own cookie jar and its own (loopback) IP address."""

    client: httpx.AsyncClient

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.post(query, variables)
        body: dict[str, Any] = response.json()
        return body

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post("/graphql", json={"query": query, "variables": variables})

    @property
    def session_cookie(self) -> str | None:
        return self.client.cookies.get(COOKIE_NAME)


def browser_for(app: Starlette, ip: str | None = None) -> Browser:
    transport = httpx.ASGITransport(app=app, client=(ip or loopback_ip(), 50000))
    return Browser(httpx.AsyncClient(transport=transport, base_url="https://testserver"))


@pytest.fixture
async def browser(auth_app: Starlette) -> AsyncIterator[Browser]:
    b = browser_for(auth_app)
    async with b.client:
        yield b


NewBrowser = Callable[[], Browser]


@pytest.fixture
async def new_browser(auth_app: Starlette) -> AsyncIterator[NewBrowser]:
    """As many separate browsers (own cookies, own IP) as a test needs; closed after it."""
    opened: list[Browser] = []

    def make() -> Browser:
        opened.append(browser_for(auth_app))
        return opened[-1]

    yield make
    for b in opened:
        await b.client.aclose()


def new_email() -> str:
    return f"person-{uuid.uuid4().hex[:10]}@example.test"


async def link_token(smtp: SmtpServer, to: str, subject_part: str) -> str:
    """Wait for the mail to ``to`` whose subject contains ``subject_part``; return its token."""

    def matching() -> list[Any]:
        return [m for m in smtp.to(to) if subject_part in str(m["subject"])]

    await smtp.wait_for(lambda _: bool(matching()))
    text = matching()[-1].get_body(preferencelist=("plain",)).get_content()
    found = TOKEN_IN_LINK.search(text)
    assert found, text
    return unquote(found.group(1))


SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) { accepted message } }"""
VERIFY = """mutation($t: String!, $p: String) {
  verifyEmail(token: $t, password: $p) { userId firmId role emailVerified } }"""
SIGN_IN = """mutation($e: String!, $p: String!) {
  signInWithPassword(email: $e, password: $p) { userId firmId role emailVerified } }"""
MAGIC = "mutation($e: String!) { requestMagicLink(email: $e) { accepted message } }"
MAGIC_SIGN_IN = "mutation($t: String!) { signInWithMagicLink(token: $t) { userId firmId } }"
FIRM = "{ firm { id name } }"


async def signed_up(
    browser: Browser, smtp: SmtpServer, *, email: str | None = None, firm: str = "Flow Ltd"
) -> str:
    """Sign up with a password and verify by the emailed link; the browser is signed in."""
    email = email or new_email()
    variables = {"input": {"email": email, "password": PASSWORD, "firmName": firm}}
    body = await browser.gql(SIGN_UP, variables)
    assert body["data"]["signUp"]["accepted"] is True, body
    token = await link_token(smtp, email, "Confirm your email")
    body = await browser.gql(VERIFY, {"t": token, "p": PASSWORD})
    assert body["data"]["verifyEmail"]["emailVerified"] is True, body
    return email


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
