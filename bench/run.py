"""``make bench``: load-test ``coverproof serve`` against the floors and PostGraphile.

Everything runs on this machine over loopback: a private embedded PostgreSQL (under
.coverproof/bench-pg), the app and each floor as one uvicorn worker, PostGraphile v4 under
Node.js, and wrk (Debian's package; closed-loop, 2 threads, 32 connections) as the load driver.
Results are printed as ratios to their floors and written to bench/results/ (Markdown + JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from app.db import bootstrap, embedded
from app.partners.documents import document_id
from bench import inprocess, seed

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".coverproof" / "bench"
RESULTS = ROOT / "bench" / "results"
DATABASE = "coverproof_bench"
SECRET = "bench-secret-key-" + "x" * 40
PORTS = {"app": 18001, "starlette": 18002, "strawberry": 18003, "postgraphile": 18004}
FIELDS = "id recipientName recipientEmail status createdAt"
READ = f"query Page {{ declarations(first: 50) {{ edges {{ node {{ {FIELDS} }} }} }} }}"
PG_READ = f"{{ allDeclarations(first: 50, orderBy: CREATED_AT_DESC) {{ nodes {{ {FIELDS} }} }} }}"
CREATE = (
    "mutation Create($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id } } }"
)
FORM = "query Form($t: String!) { recipientForm(token: $t) { firmName templateName } }"
SUBMIT = (
    "mutation Submit($t: String!, $i: SubmissionInput!) { submitDeclaration(token: $t, "
    "input: $i) { responseSha256 } }"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_ready(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not free(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@contextmanager
def server(name: str, command: list[str], env: dict[str, str]) -> Iterator[psutil.Process]:
    if not free(PORTS[name]):
        raise RuntimeError(f"port {PORTS[name]} is taken; stop whatever listens there")
    log = open(STATE / f"{name}.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_ready(PORTS[name])
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class RssSampler:
    """The peak resident memory of a server process (and its children) while a load runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak, self._stop = process, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.process.memory_info().rss + sum(
                    c.memory_info().rss for c in self.process.children(recursive=True)
                )
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def wrk(
    port: int, script: str, args: list[str], seconds: int, connections: int = 32
) -> dict[str, Any]:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        f"bench/wrk/{script}",
        f"http://127.0.0.1:{port}",
        "--",
        *args,
    ]
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def load(
    name: str,
    process: psutil.Process,
    port: int,
    script: str,
    args: list[str],
    seconds: int,
    connections: int = 32,
) -> dict[str, Any]:
    warm = [*args[:3], "0.8"] if script == "tokens.lua" else args
    wrk(port, script, warm, 2, connections)  # warm-up: pools and caches
    with RssSampler(process) as rss:
        result = wrk(port, script, args, seconds, connections)
    result["peak_rss_mb"] = round(rss.peak / 2**20, 1)
    errors = result["non_2xx"] + result["socket_errors"] + result["graphql_errors"]
    print(
        f"  {name:<28} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:.2f} ms  "
        f"p99 {result['p99_ms']:.2f} ms  rss {result['peak_rss_mb']} MB  errors {errors}",
        flush=True,
    )
    return result


def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        if shutil.which("wrk") is None:
            sys.exit("wrk is needed: apt-get install wrk")
    modules = ROOT / "bench" / "postgraphile" / "node_modules"
    if not modules.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=modules.parent, check=True, timeout=600
        )


async def provision() -> tuple[bootstrap.SocketServer, str, str]:
    pg = embedded.start(ROOT / ".coverproof" / "bench-pg")
    superuser = pg.url(pg.superuser, "postgres")
    conn = await asyncpg.connect(superuser)
    await conn.execute(f"drop database if exists {DATABASE} with (force)")
    await conn.close()
    owner = pg.url(bootstrap.OWNER_ROLE, DATABASE)
    await asyncio.to_thread(bootstrap.provision, superuser, owner, DATABASE)
    return pg, pg.url(pg.superuser, DATABASE), pg.url(bootstrap.APP_ROLE, DATABASE)


async def prepare(seconds: int) -> dict[str, Any]:
    print(
        "provisioning and seeding (100 firms x 2,000 declarations, a 100,000-entry chain)...",
        flush=True,
    )
    pg, superuser, app_url = await provision()
    seeded = await seed.seed(superuser, SECRET)
    conn = await asyncpg.connect(superuser)
    await conn.execute(
        "insert into trusted_documents (id, body, name, operation_type) "
        "values ($1, $2, 'Page', 'query')",
        document_id(READ),
        READ,
    )
    await conn.close()
    half = len(seeded.tokens) // 2
    files = {
        "cookies": write(STATE / "cookies.txt", "\n".join(seeded.cookies)),
        "hot_cookie": write(STATE / "hot_cookie.txt", seeded.cookies[1]),
        "firms": write(STATE / "firms.txt", "\n".join(seeded.firms)),
        "form_tokens": write(STATE / "form_tokens.txt", "\n".join(seeded.tokens[:half])),
        "submit_tokens": write(STATE / "submit_tokens.txt", "\n".join(seeded.tokens[half:])),
        "read": write(STATE / "read.json", json.dumps({"query": READ})),
        "read_persisted": write(
            STATE / "read_persisted.json", json.dumps({"documentId": "sha256:" + document_id(READ)})
        ),
        "pg_read": write(STATE / "pg_read.json", json.dumps({"query": PG_READ})),
        "create": write(
            STATE / "create.json",
            json.dumps(
                {
                    "query": CREATE,
                    "variables": {
                        "i": {
                            "templateId": str(seed.FIT.id),
                            "recipientName": "Load Test",
                            "recipientEmail": "load@example.test",
                        }
                    },
                }
            ),
        ),
        "form": write(
            STATE / "form.json", json.dumps({"query": FORM, "variables": {"t": "TOKEN"}})
        ),
        "submit": write(
            STATE / "submit.json",
            json.dumps(
                {
                    "query": SUBMIT,
                    "variables": {
                        "t": "TOKEN",
                        "i": {
                            "answers": seed.valid_answers(),
                            "attestationAccepted": True,
                            "signatureName": "Load Test",
                        },
                    },
                }
            ),
        ),
    }
    return {
        "pg": pg,
        "superuser": superuser,
        "app_url": app_url,
        "seeded": seeded,
        "files": files,
        "seconds": seconds,
    }


def run_http(ctx: dict[str, Any]) -> dict[str, Any]:
    f, seconds, results = ctx["files"], ctx["seconds"], {}
    app_env = {
        "COVERPROOF_DATABASE_URL": ctx["app_url"],
        "COVERPROOF_SECRET_KEY": SECRET,
        "COVERPROOF_DATA_DIR": str(STATE / "data"),
        "COVERPROOF_RATE_LIMIT_SCALE": "100000",
        "COVERPROOF_IP_REQUESTS_PER_MINUTE": "100000000",
        "COVERPROOF_DB_POOL_SIZE": "32",
        "COVERPROOF_AUDIT_CHECKPOINT_MINUTES": "0",
        "COVERPROOF_PORT": str(PORTS["app"]),
    }
    floor_env = {"COVERPROOF_BENCH_DATABASE_URL": ctx["app_url"]}
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--host",
        "127.0.0.1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    cookie = ["cookie", str(f["cookies"]), "", "__Host-cp_session="]
    print("read: declarations(first: 50), 5 fields per node", flush=True)
    with server("app", [sys.executable, "-m", "app.cli", "serve"], app_env) as app:
        results["read_app"] = load(
            "app (query text)",
            app,
            PORTS["app"],
            "graphql.lua",
            [cookie[0], cookie[1], str(f["read"]), cookie[3]],
            seconds,
        )
        results["read_app_persisted"] = load(
            "app (persisted id)",
            app,
            PORTS["app"],
            "graphql.lua",
            [cookie[0], cookie[1], str(f["read_persisted"]), cookie[3]],
            seconds,
        )
        results["read_app_light"] = load(
            "app (persisted, 8 connections)",
            app,
            PORTS["app"],
            "graphql.lua",
            [cookie[0], cookie[1], str(f["read_persisted"]), cookie[3]],
            seconds,
            connections=8,
        )
        print("write: createDeclaration (with its chained audit entry)", flush=True)
        results["write_spread"] = load(
            "app, 100 firms",
            app,
            PORTS["app"],
            "graphql.lua",
            [cookie[0], cookie[1], str(f["create"]), cookie[3]],
            seconds,
        )
        results["write_hot"] = load(
            "app, one hot firm",
            app,
            PORTS["app"],
            "graphql.lua",
            [cookie[0], str(f["hot_cookie"]), str(f["create"]), cookie[3]],
            seconds,
        )
        print("public: recipientForm and submitDeclaration with fresh tokens", flush=True)
        per_thread = str(len(ctx["seeded"].tokens) // 4)
        results["public_form"] = load(
            "recipientForm",
            app,
            PORTS["app"],
            "tokens.lua",
            [str(f["form_tokens"]), str(f["form"]), per_thread],
            max(3, seconds // 2),
        )
        results["public_submit"] = load(
            "submitDeclaration",
            app,
            PORTS["app"],
            "tokens.lua",
            [str(f["submit_tokens"]), str(f["submit"]), per_thread],
            max(3, seconds // 2),
        )
    firm = ["x-firm-id", str(f["firms"]), str(f["read"])]
    with server(
        "starlette",
        [*uvicorn, "--port", str(PORTS["starlette"]), "bench.floors:starlette_app"],
        floor_env,
    ) as p:
        results["read_floor_starlette"] = load(
            "floor: Starlette + asyncpg", p, PORTS["starlette"], "graphql.lua", firm, seconds
        )
    with server(
        "strawberry",
        [*uvicorn, "--port", str(PORTS["strawberry"]), "bench.floors:strawberry_app"],
        floor_env,
    ) as p:
        results["read_floor_strawberry"] = load(
            "floor: plain Strawberry", p, PORTS["strawberry"], "graphql.lua", firm, seconds
        )
    node_url = ctx["app_url"].replace("postgresql://", "postgres://")
    with server(
        "postgraphile",
        ["node", "bench/postgraphile/server.js", node_url, str(PORTS["postgraphile"])],
        {},
    ) as p:
        results["read_postgraphile"] = load(
            "peer: PostGraphile v4",
            p,
            PORTS["postgraphile"],
            "graphql.lua",
            ["x-firm-id", str(f["firms"]), str(f["pg_read"])],
            seconds,
        )
    return results


def ratios(r: dict[str, Any]) -> dict[str, float]:
    def ratio(a: str, b: str) -> float:
        return round(r[a]["rps"] / r[b]["rps"], 2) if r.get(a) and r.get(b) and r[b]["rps"] else 0.0

    return {
        "read vs PostGraphile": ratio("read_app", "read_postgraphile"),
        "read (persisted) vs PostGraphile": ratio("read_app_persisted", "read_postgraphile"),
        "read vs Starlette + asyncpg floor": ratio("read_app", "read_floor_starlette"),
        "read (persisted) vs Starlette floor": ratio("read_app_persisted", "read_floor_starlette"),
        "read vs plain Strawberry": ratio("read_app", "read_floor_strawberry"),
        "write, 100 firms vs raw asyncpg": round(
            r["write_spread"]["rps"] / r["raw_write_spread"]["ops"], 2
        ),
        "write, hot firm vs raw asyncpg": round(
            r["write_hot"]["rps"] / r["raw_write_hot"]["ops"], 2
        ),
        "verification vs bare hashlib": round(
            r["verify"]["bare_seconds"] / r["verify"]["seconds"], 2
        ),
        "pack time / bare xhtml2pdf": round(r["pack"]["seconds"] / r["pack"]["bare_seconds"], 2),
        "read p99 / p50 (persisted, full load)": round(
            r["read_app_persisted"]["p99_ms"] / r["read_app_persisted"]["p50_ms"], 2
        ),
        "read p99 / p50 (persisted, 8 connections)": round(
            r["read_app_light"]["p99_ms"] / r["read_app_light"]["p50_ms"], 2
        ),
    }


def report(results: dict[str, Any], table: dict[str, float]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = f"{os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB"
    payload = {"at": stamp, "machine": machine, "results": results, "ratios": table}
    (RESULTS / f"{stamp}.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = [
        f"# Benchmark {stamp}",
        "",
        f"Machine: {machine}; wrk 2 threads, 32 connections.",
        "",
        "| scenario | req/s | p50 ms | p99 ms | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if "rps" in r:
            lines.append(
                f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['peak_rss_mb']} |"
            )
    lines += ["", "| in-process | value |", "|---|---|"]
    for name, r in results.items():
        if "rps" not in r:
            lines.append(f"| {name} | {json.dumps(r)} |")
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / "latest.md").write_text(text)
    print("\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per scenario")
    args = parser.parse_args()
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    ctx = asyncio.run(prepare(args.seconds))
    results = run_http(ctx)
    results.update(asyncio.run(inprocess.run(ctx["app_url"], ctx["seeded"], args.seconds)))
    report(results, ratios(results))


if __name__ == "__main__":
    main()
