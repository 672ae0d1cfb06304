"""Profile one scenario in-process (cProfile), against the database ``make bench`` seeded:
``python -m bench.profile [read|persisted|write|persisted_write] [requests]``. Prints the top
functions by cumulative and by own time; this is how we found where the request time goes."""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys

import httpx

from app.config import Settings
from app.db import bootstrap, embedded
from app.main import create_app
from app.partners.documents import document_id
from bench.run import DATABASE, READ, ROOT, SECRET, STATE


async def main(kind: str, count: int) -> None:
    pg = embedded.start(ROOT / ".coverproof" / "bench-pg")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=pg.url(bootstrap.APP_ROLE, DATABASE),
        secret_key=SECRET,
        data_dir=STATE / "data",
        rate_limit_scale=100000,
        ip_requests_per_minute=10**9,
        audit_checkpoint_minutes=0,
    )
    app = create_app(settings)
    cookie = (STATE / "cookies.txt").read_text().split()[3]
    body = {"query": READ} if kind == "read" else {"documentId": "sha256:" + document_id(READ)}
    if kind == "typename":
        body = {"query": "{ __typename }"}
    if kind in ("write", "persisted_write"):
        name = "create.json" if kind == "write" else "create_persisted.json"
        body = json.loads((STATE / name).read_text())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            headers = {"cookie": f"__Host-cp_session={cookie}"}
            for _ in range(20):
                await client.post("/graphql", json=body, headers=headers)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(count):
                response = await client.post("/graphql", json=body, headers=headers)
                assert "errors" not in response.text, response.text[:300]
            profile.disable()
    stats = pstats.Stats(profile).strip_dirs()
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "read",
            int(sys.argv[2]) if len(sys.argv) > 2 else 200,
        )
    )
