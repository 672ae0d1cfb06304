"""The real Apollo Client persisted-queries link (from npm, run with the machine's Node.js) against
the server on a loopback port: the first request by hash is PERSISTED_QUERY_NOT_FOUND, the link's
retry registers the document, and the next request by hash alone succeeds.

Node.js is a test requirement: without it this test fails (it never skips), so CI cannot pass
without having run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from app.auth.actor import Role
from tests.factories import Members

PROJECT = Path(__file__).resolve().parent / "apollo"
NPM_TIMEOUT = 60
SCRIPT_TIMEOUT = 20
OUTPUT_TAIL = 4_000  # characters of npm or node output shown when they fail


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serving(application: Starlette) -> AsyncIterator[str]:
    """The already-started app on a real loopback port, in this event loop; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "Node.js is needed for the Apollo Client test (node and npm on PATH); "
            "install Node.js 18 or later, e.g. `apt-get install nodejs npm`."
        )
    return node, npm


async def run(*argv: str, limit: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=PROJECT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{' '.join(argv[:2])} took longer than {limit} s")
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def installed(npm: str) -> None:
    """``npm ci`` from the lockfile when node_modules is missing (bounded in time and output)."""
    if (PROJECT / "node_modules" / "@apollo" / "client" / "package.json").exists():
        return
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_loglevel": "error"}
    code, out, err = await run(
        npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", limit=NPM_TIMEOUT, env=env
    )
    if code != 0:
        pytest.fail(f"npm ci failed ({code}):\n{out[-OUTPUT_TAIL:]}\n{err[-OUTPUT_TAIL:]}")


async def test_apollo_clients_persisted_query_link_registers_on_not_found_then_uses_the_hash(
    auth_app: Starlette, members: Members
) -> None:
    node, npm = node_tools()
    await installed(npm)
    owner = await members.create(Role.OWNER, name="Apollo Advisers Ltd")
    suffix = secrets.token_hex(4)
    async with serving(auth_app) as url:
        code, out, err = await run(node, "apq.mjs", url, owner.cookie, suffix, limit=SCRIPT_TIMEOUT)
    assert code == 0, f"apq.mjs failed ({code}):\n{err[-OUTPUT_TAIL:]}\n{out[-OUTPUT_TAIL:]}"
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line.strip()]
    requests, outcome = lines[:-1], lines[-1]

    firm = {"firm": {"name": "Apollo Advisers Ltd", "__typename": "Firm"}}
    seen = [
        (r["hasPersistedQuery"], r["hasQuery"], r["status"], r["codes"], r["data"])
        for r in requests
    ]
    assert seen == [
        (True, False, 200, ["PERSISTED_QUERY_NOT_FOUND"], None),  # by hash: unknown
        (True, True, 200, [], firm),  # the link's retry with the text registers it
        (True, False, 200, [], firm),  # by hash alone, now known
    ], out
    assert outcome == {"results": [firm, firm]}
    assert len(auth_app.state.coverproof.apq) <= auth_app.state.coverproof.apq.max_entries
