"""The app served as `coverproof serve` serves it (uvicorn with app.cli.SERVER_OPTIONS), read
off the socket: what uvicorn itself would answer is the app's to prevent where it can."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from pydantic import ValidationError
from sqlalchemy import make_url
from starlette.applications import Starlette
from starlette.middleware import Middleware

from app import cli
from app.cli import SERVER_OPTIONS
from app.main import create_app
from tests.conftest import REDIS_URL, Database, make_settings, new_signing_key_pem

PROMISED = (
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
)


def _server(app: Starlette) -> uvicorn.Server:
    options = {**SERVER_OPTIONS, "log_level": "warning"}
    return uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[uvicorn.Server]:
    server = _server(app)
    task = asyncio.create_task(server.serve())
    for _ in range(3000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        await task


async def _head(server: uvicorn.Server, request: bytes) -> tuple[int, dict[str, str]]:
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines if ":" in line)
    return int(status.split()[1]), {name.strip().lower(): value.strip() for name, value in fields}


@pytest.mark.parametrize("path", ["/graphql", "/respond", "/nope"])
async def test_a_websocket_upgrade_is_answered_as_any_request(
    database: Database, tmp_path: Path, path: str
) -> None:
    """The app serves no WebSocket: uvicorn answered an upgrade to any path with its own 403,
    without a header the security page promises on every response."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
    async with serving(create_app(make_settings(database, tmp_path))) as server:
        status, headers = await _head(server, request.encode())
    assert status != 101
    assert [name for name in PROMISED if name not in headers] == [], (status, headers)


async def _exchange(server: uvicorn.Server, *writes: bytes) -> bytes:
    """Each write in turn (a moment apart), then all the server answers until it closes."""
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered = b""
    try:
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.3)
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            answered += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed on us while we wrote: it answered what it read before
    finally:
        writer.close()
    return answered


@pytest.mark.parametrize(
    "asking",
    [b"Upgrade: websocket\r\nConnection: Upgrade", b"Upgrade: h2c\r\nConnection: Upgrade", b""],
    ids=["websocket", "h2c", "connect"],
)
async def test_no_request_is_smuggled_in_the_body_of_an_upgrade(
    database: Database, tmp_path: Path, asking: bytes
) -> None:
    """uvicorn's default parser reads a request asking to upgrade (or CONNECT) as ending with
    its headers, whatever its Content-Length, and what follows as requests of their own: one
    hidden in the body, past a proxy that forwards Upgrade. The app refuses such a request and
    closes the connection: the hidden one is never answered."""
    hidden = b"GET /healthz HTTP/1.1\r\nHost: testserver\r\n\r\n"
    method = b"CONNECT" if not asking else b"POST"
    head = (
        method
        + b" /graphql HTTP/1.1\r\nHost: testserver\r\n"
        + (asking + b"\r\n" if asking else b"")
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(hidden)
    )
    async with serving(create_app(make_settings(database, tmp_path))) as server:
        answered = await _exchange(server, head, hidden)
    assert answered.count(b"HTTP/1.1 ") == 1, answered
    assert answered.startswith(b"HTTP/1.1 400 "), answered
    assert b"strict-transport-security" in answered.lower()


async def test_a_lifespan_that_fails_stops_the_server(database: Database, tmp_path: Path) -> None:
    """Redis not answering at startup: the server does not start."""
    unreachable = make_settings(database, tmp_path, rate_limit_storage="redis://127.0.0.1:1")
    server = _server(create_app(unreachable))
    with pytest.raises(SystemExit):
        async with asyncio.timeout(30):  # served on, it would answer until stopped
            await server.serve()
    assert not server.started


class _Refused:
    def __init__(self, _app: object) -> None:
        raise ValueError("a setting this middleware refuses")


async def test_an_app_that_cannot_be_built_stops_the_server() -> None:
    """Starlette builds its middleware at the first call, the lifespan's: one that refuses
    its settings there failed the lifespan before it began. Under uvicorn's default the server
    took that for "no lifespan" and served on, every request answered by its own bare 500."""
    server = _server(Starlette(middleware=[Middleware(_Refused)]))
    with pytest.raises(SystemExit):
        async with asyncio.timeout(30):  # served on, it would answer until stopped
            await server.serve()
    assert not server.started


def test_a_per_ip_limit_of_nothing_is_refused_as_configuration(
    database: Database, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="ip_requests_per_minute"):
        make_settings(database, tmp_path, ip_requests_per_minute=0)


def test_serve_refuses_a_signing_key_that_is_no_key_before_any_worker_starts(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Built once before uvicorn starts: with --workers, each worker failed with a traceback
    of its own and uvicorn's supervisor started it again without end."""
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    monkeypatch.setenv("COVERPROOF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COVERPROOF_AUDIT_SIGNING_KEY", "not a pem")
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **_: started.append(a))
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert started == []
    refused = capsys.readouterr().err
    assert "COVERPROOF_AUDIT_SIGNING_KEY must be an unencrypted PEM private key." in refused
    assert "not a pem" not in refused


def test_a_setting_out_of_bounds_is_refused_as_configuration_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings() refused them with pydantic's error, which escaped as a traceback (exit 1)
    from every command, serve too: now one line per setting, naming it, never its value."""
    monkeypatch.setenv("COVERPROOF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COVERPROOF_SESSION_LIFETIME_HOURS", "1000")
    monkeypatch.setenv("COVERPROOF_PORT", "80eighty")
    monkeypatch.setenv("COVERPROOF_TRUSTED_PROXIES", "10.0.0.5, lb.internal")
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **_: started.append(a))
    assert cli.main(["serve"]) == 2
    assert started == []
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.splitlines() == [
        "configuration: COVERPROOF_PORT: Input should be a valid integer, unable to parse "
        "string as an integer",
        "configuration: COVERPROOF_SESSION_LIFETIME_HOURS: Input should be less than or equal "
        "to 720",
        "configuration: COVERPROOF_TRUSTED_PROXIES: entry 2 is not an IP address or network "
        "(10.0.0.5, 10.0.0.0/8); a host name is not resolved.",
    ]


SECRET = "hunter2-never-printed"
# Production's settings, all usable but the one each case leaves out.
PRODUCTION = {
    "COVERPROOF_ENV": "production",
    "COVERPROOF_SECRET_KEY": "s" * 32,
    "COVERPROOF_PUBLIC_URL": "https://api.example.test",
    "COVERPROOF_RATE_LIMIT_STORAGE": REDIS_URL,
    "COVERPROOF_STORAGE_URL": "s3://packs",
}


def _database_url(database: Database, **query: str) -> str:
    url = make_url(database.app_url).set(password=SECRET).update_query_dict(query)
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        (
            {"COVERPROOF_STORAGE_URL": f"https://{SECRET}@bucket.example.test/packs"},
            "COVERPROOF_STORAGE_URL must look like s3://bucket or s3://bucket/prefix.",
        ),
        (
            {"COVERPROOF_SMTP_URL": f"ftp://user:{SECRET}@mail.example.test:25"},
            "COVERPROOF_SMTP_URL must start with smtp://, smtps:// or smtp+insecure://.",
        ),
        (
            PRODUCTION,
            "COVERPROOF_SMTP_URL must be set in production (smtp:// or smtps://) to send mail.",
        ),
        (
            {"COVERPROOF_RATE_LIMIT_STORAGE": f"memcached://user:{SECRET}@cache:11211"},
            "COVERPROOF_RATE_LIMIT_STORAGE must be memory:// or redis://host:port[/db], not a "
            "memcached URI.",
        ),
        (
            {"ssl": "require", "sslmode": "require"},
            "COVERPROOF_DATABASE_URL cannot be read as postgresql://user:password@host:port/"
            "database, with ssl or sslmode given at most once (the URL is not printed).",
        ),
        (
            {"COVERPROOF_DATABASE_URL": f"postgresql://coverproof_app:{SECRET}/coverproof"},
            "COVERPROOF_DATABASE_URL cannot be read as postgresql://user:password@host:port/"
            "database, with ssl or sslmode given at most once (the URL is not printed).",
        ),
        (  # the library's own error printed the URI, password and all (a second review)
            {"COVERPROOF_RATE_LIMIT_STORAGE": f"redis://default:{SECRET}/0"},
            "COVERPROOF_RATE_LIMIT_STORAGE cannot be read as a storage URI (it is not printed).",
        ),
        (  # the Redis client's KeyError: a traceback, and exit 1
            {"COVERPROOF_RATE_LIMIT_STORAGE": f"rediss://:{SECRET}@cache:6380/0?ssl_cert_reqs=no"},
            "COVERPROOF_RATE_LIMIT_STORAGE cannot be read as a storage URI (it is not printed).",
        ),
        (  # urlsplit's "Invalid IPv6 URL": a traceback, and exit 1
            {"COVERPROOF_SMTP_URL": f"smtp://user:{SECRET}@[mail.example.test:587"},
            "COVERPROOF_SMTP_URL cannot be read as a URL.",
        ),
        (
            {"COVERPROOF_STORAGE_URL": "s3://[packs"},
            "COVERPROOF_STORAGE_URL must look like s3://bucket or s3://bucket/prefix.",
        ),
    ],
    ids=[
        "storage",
        "smtp",
        "no-smtp-in-production",
        "rate-limits",
        "ssl-twice",
        "unreadable-url",
        "redis-without-host",
        "redis-bad-option",
        "smtp-unreadable",
        "storage-unreadable",
    ],
)
def test_serve_refuses_every_setting_the_app_refuses_before_any_worker_starts(
    env: dict[str, str],
    refused: str,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused only in the lifespan, by each worker after uvicorn started: a traceback and exit
    code 3, or 0 with --workers. The app now builds what its lifespan uses, unconnected, when
    it is made."""
    query = {name: value for name, value in env.items() if not name.startswith("COVERPROOF_")}
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", _database_url(database, **query))
    monkeypatch.setenv("COVERPROOF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COVERPROOF_AUDIT_SIGNING_KEY", new_signing_key_pem())
    for name, value in env.items():
        if name.startswith("COVERPROOF_"):
            monkeypatch.setenv(name, value)
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **_: started.append(a))
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert started == []
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("", f"configuration: {refused}\n")
