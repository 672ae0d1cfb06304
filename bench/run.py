"""``make bench``: load-test ``coverproof serve`` against the floors and PostGraphile.

Everything runs on this machine over loopback: a private embedded PostgreSQL (under
.coverproof/bench-pg), the app and each floor as one uvicorn worker, PostGraphile v4 under
Node.js, and wrk (Debian's package; closed-loop, 2 threads, 32 connections) as the load driver.
Results are printed as ratios to their floors and written to bench/results/ (Markdown + JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
GROUPS = ("read", "write", "public", "floors", "inprocess")
PORTS = {
    "app": 18001,
    "starlette": 18002,
    "strawberry": 18003,
    "postgraphile": 18004,
    "starlette_write": 18005,
}
FIELDS = "id recipientName recipientEmail status createdAt"
READ = f"query Page {{ declarations(first: 50) {{ edges {{ node {{ {FIELDS} }} }} }} }}"
PG_READ = f"{{ allDeclarations(first: 50, orderBy: CREATED_AT_DESC) {{ nodes {{ {FIELDS} }} }} }}"
CREATE = (
    "mutation Create($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id } } }"
)
CREATE_INPUT = {
    "variables": {
        "i": {
            "templateId": str(seed.FIT.id),
            "recipientName": "Load Test",
            "recipientEmail": "load@example.test",
        }
    }
}
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
    warm: bool = True,
) -> dict[str, Any]:
    if warm:  # pools and caches
        wrk(port, script, [*args[:3], "0.8"] if script == "tokens.lua" else args, 2, connections)
    with RssSampler(process) as rss:
        result = wrk(port, script, args, seconds, connections)
    result["peak_rss_mb"] = round(rss.peak / 2**20, 1)
    errors = result["non_2xx"] + result["socket_errors"] + result["graphql_errors"]
    print(
        f"  {name:<28} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:.2f} ms  "
        f"p99 {result['p99_ms']:.2f} ms  rss {result['peak_rss_mb']} MB  errors {errors}",
        flush=True,
    )
    if errors:
        # A load answered with errors measured refusals, not the work; with --reuse, the seeded
        # sessions go idle after the session's idle time.
        sys.exit(
            f"{name}: {errors} requests failed, so its numbers measure nothing; run without "
            "--reuse if the seeded sessions may have gone idle"
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
    await asyncio.to_thread(bootstrap.provision, superuser, DATABASE)
    return pg, pg.url(pg.superuser, DATABASE), pg.url(bootstrap.APP_ROLE, DATABASE)


async def seeded_database(reuse: bool) -> tuple[bootstrap.SocketServer, str, str, seed.Seeded]:
    """The bench database: the one the last run seeded, with --reuse, or a fresh one."""
    saved = STATE / "seeded.json"
    if reuse and saved.exists():
        print("reusing the database the last run seeded", flush=True)
        pg = embedded.start(ROOT / ".coverproof" / "bench-pg")
        superuser = pg.url(pg.superuser, DATABASE)
        # Provisioned again (idempotent): migrations added since it was seeded, and what the
        # app now refuses to start without (the seal, the administrator's database). In a
        # thread: alembic's env runs its own event loop.
        await asyncio.to_thread(bootstrap.provision, pg.url(pg.superuser, "postgres"), DATABASE)
        return (
            pg,
            superuser,
            pg.url(bootstrap.APP_ROLE, DATABASE),
            seed.Seeded(**json.loads(saved.read_text())),
        )
    print(
        "provisioning and seeding (100 firms x 2,000 declarations, a 100,000-entry chain)...",
        flush=True,
    )
    saved.unlink(missing_ok=True)
    pg, superuser, app_url = await provision()
    seeded = await seed.seed(superuser, SECRET)
    saved.write_text(json.dumps(dataclasses.asdict(seeded)))
    return pg, superuser, app_url, seeded


async def prepare(seconds: int, reuse: bool) -> dict[str, Any]:
    pg, superuser, app_url, seeded = await seeded_database(reuse)
    conn = await asyncpg.connect(superuser)
    for name, kind, body in (("Page", "query", READ), ("Create", "mutation", CREATE)):
        await conn.execute(
            "insert into trusted_documents (id, body, name, operation_type) "
            "values ($1, $2, $3, $4) on conflict do nothing",
            document_id(body),
            body,
            name,
            kind,
        )
    await conn.close()
    half = len(seeded.tokens) // 2
    files = {
        "cookies": write(STATE / "cookies.txt", "\n".join(seeded.cookies)),
        "hot_cookie": write(STATE / "hot_cookie.txt", seeded.cookies[1]),
        "hot_firm": write(STATE / "hot_firm.txt", seeded.firms[1]),
        "firms": write(STATE / "firms.txt", "\n".join(seeded.firms)),
        "form_tokens": write(STATE / "form_tokens.txt", "\n".join(seeded.tokens[:half])),
        "submit_tokens": write(STATE / "submit_tokens.txt", "\n".join(seeded.tokens[half:])),
        "read": write(STATE / "read.json", json.dumps({"query": READ})),
        "read_persisted": write(
            STATE / "read_persisted.json", json.dumps({"documentId": "sha256:" + document_id(READ)})
        ),
        "pg_read": write(STATE / "pg_read.json", json.dumps({"query": PG_READ})),
        "create": write(STATE / "create.json", json.dumps({"query": CREATE, **CREATE_INPUT})),
        "create_persisted": write(
            STATE / "create_persisted.json",
            json.dumps({"documentId": "sha256:" + document_id(CREATE), **CREATE_INPUT}),
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


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str
    script: str
    args: list[str]
    connections: int = 32


def measure(
    process: psutil.Process, scenario: Scenario, seconds: int, warm: bool = True
) -> dict[str, Any]:
    name = scenario.server
    return load(
        scenario.label,
        process,
        PORTS[name],
        scenario.script,
        scenario.args,
        seconds,
        scenario.connections,
        warm,
    )


Commands = dict[str, tuple[list[str], dict[str, str]]]


def interleaved(
    commands: Commands,
    scenarios: list[Scenario],
    seconds: int,
    rounds: int,
    raw: Callable[[], dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Each scenario once per round, in turn, so that a slow spell of a shared machine falls on
    all of them alike; each scenario's median round is its result. Only the server under load
    runs (started afresh each round), so their pools never compete for connections. ``raw``
    measures in-process floors once a round, after the servers have stopped."""
    runs: dict[str, list[dict[str, Any]]] = {scenario.key: [] for scenario in scenarios}
    for _ in range(rounds):
        for name in dict.fromkeys(scenario.server for scenario in scenarios):
            with server(name, *commands[name]) as process:
                for scenario in scenarios:
                    if scenario.server == name:
                        runs[scenario.key].append(measure(process, scenario, seconds))
        for key, result in (raw() if raw else {}).items():
            runs.setdefault(key, []).append(result)
    results = {}
    for key, found in runs.items():
        median = dict(sorted(found, key=lambda r: r["rps"])[len(found) // 2])
        median["rounds_rps"] = [round(r["rps"], 1) for r in found]
        results[key] = median
    return results


def paced(commands: Commands, scenario: Scenario, seconds: int) -> dict[str, Any]:
    """A read held at ~70 % of its peak: each of 32 connections pauses between requests (an
    exponential pause, as independent users would); the mean pause is corrected from short
    trials (a cycle is latency + pause). The peak is measured in the same server just before:
    the machine's speed drifts, and 70 % of a faster minute's peak is a heavier load than 70 %."""
    name = scenario.server
    with server(name, *commands[name]) as process:
        wrk(PORTS[name], scenario.script, scenario.args, 2)  # warm-up
        peak = wrk(PORTS[name], scenario.script, scenario.args, 5)["rps"]
        target = 0.7 * peak
        pause = 32 / target
        for _ in range(3):  # latency grows with the load, so correct more than once
            trial = wrk(PORTS[name], "paced.lua", [*scenario.args, str(round(pause * 1000))], 3)
            latency = max(0.0, 32 / trial["rps"] - pause)
            pause = max(0.001, 32 / target - latency)
        held = Scenario(
            scenario.key + "_paced",
            scenario.label + ", 70 % of peak",
            name,
            "paced.lua",
            [*scenario.args, str(round(pause * 1000))],
        )
        result = measure(process, held, seconds, warm=False)
    result["peak_rps"] = round(peak, 1)
    result["share_of_peak"] = round(result["rps"] / peak, 2)
    return result


def scenarios(f: dict[str, Path], tokens: int) -> dict[str, list[Scenario]]:
    """The load of each group, as (cookie or firm-id header, values, body) for graphql.lua."""
    cookie = ["cookie", str(f["cookies"])]
    prefix = "__Host-cp_session="
    firm = ["x-firm-id", str(f["firms"])]
    per_thread = str(tokens // 4)
    return {
        "read": [
            Scenario(
                "read_app",
                "app (query text)",
                "app",
                "graphql.lua",
                [*cookie, str(f["read"]), prefix],
            ),
            Scenario(
                "read_app_persisted",
                "app (persisted id)",
                "app",
                "graphql.lua",
                [*cookie, str(f["read_persisted"]), prefix],
            ),
            Scenario(
                "read_postgraphile",
                "peer: PostGraphile v4",
                "postgraphile",
                "graphql.lua",
                [*firm, str(f["pg_read"]), ""],  # no prefix: the pause (paced.lua) is 5th
            ),
        ],
        "floors": [
            Scenario(
                "read_floor_starlette",
                "floor: Starlette + asyncpg",
                "starlette",
                "graphql.lua",
                [*firm, str(f["read"]), ""],  # no prefix: the pause (paced.lua) is 5th
            ),
            Scenario(
                "read_floor_strawberry",
                "floor: plain Strawberry",
                "strawberry",
                "graphql.lua",
                [*firm, str(f["read"])],
            ),
        ],
        "write": [
            Scenario(
                "write_spread",
                "app, 100 firms",
                "app",
                "graphql.lua",
                [*cookie, str(f["create"]), prefix],
            ),
            Scenario(
                "write_hot",
                "app, one hot firm",
                "app",
                "graphql.lua",
                ["cookie", str(f["hot_cookie"]), str(f["create"]), prefix],
            ),
            Scenario(
                "write_spread_persisted",
                "app, 100 firms, persisted (the write lane)",
                "app",
                "graphql.lua",
                [*cookie, str(f["create_persisted"]), prefix],
            ),
            Scenario(
                "write_hot_persisted",
                "app, one hot firm, persisted (the write lane)",
                "app",
                "graphql.lua",
                ["cookie", str(f["hot_cookie"]), str(f["create_persisted"]), prefix],
            ),
            Scenario(
                "write_floor_spread",
                "floor: Starlette + asyncpg, 100 firms",
                "starlette_write",
                "graphql.lua",
                [*firm, str(f["create"]), ""],
            ),
            Scenario(
                "write_floor_hot",
                "floor: Starlette + asyncpg, one hot firm",
                "starlette_write",
                "graphql.lua",
                ["x-firm-id", str(f["hot_firm"]), str(f["create"]), ""],
            ),
        ],
        "public": [
            Scenario(
                "public_form",
                "recipientForm",
                "app",
                "tokens.lua",
                [str(f["form_tokens"]), str(f["form"]), per_thread],
            ),
            Scenario(
                "public_submit",
                "submitDeclaration",
                "app",
                "tokens.lua",
                [str(f["submit_tokens"]), str(f["submit"]), per_thread],
            ),
        ],
    }


def server_commands(ctx: dict[str, Any], groups: set[str]) -> Commands:
    """How to start every server the groups load, each one uvicorn worker (or one Node
    process)."""
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
        # As app.cli.SERVER_OPTIONS serves the app, so no floor is slowed by work ours skips.
        "--no-access-log",
        "--no-proxy-headers",
        "--no-server-header",
        "--ws",
        "none",
        "--lifespan",
        "on",
        "--log-level",
        "warning",
    ]
    node_url = ctx["app_url"].replace("postgresql://", "postgres://")
    commands: Commands = {}
    if groups & {"read", "write", "public"}:
        commands["app"] = ([sys.executable, "-m", "app.cli", "serve"], app_env)
    if "read" in groups:
        node = ["node", "bench/postgraphile/server.js", node_url, str(PORTS["postgraphile"])]
        commands["postgraphile"] = (node, {})
    if "floors" in groups:
        for name in ("starlette", "strawberry"):
            target = f"bench.floors:{name}_app"
            commands[name] = ([*uvicorn, "--port", str(PORTS[name]), target], floor_env)
    if "write" in groups:
        target = "bench.floors:starlette_write_app"
        port = str(PORTS["starlette_write"])
        commands["starlette_write"] = ([*uvicorn, "--port", port, target], floor_env)
    return commands


def run_http(ctx: dict[str, Any], groups: set[str], rounds: int) -> dict[str, Any]:
    f, seconds = ctx["files"], ctx["seconds"]
    loads = scenarios(f, len(ctx["seeded"].tokens))
    commands = server_commands(ctx, groups)
    results: dict[str, Any] = {}
    reads = [s for group in ("read", "floors") if group in groups for s in loads[group]]

    def raw(*names: str) -> Callable[[], dict[str, dict[str, Any]]]:
        return lambda: asyncio.run(
            inprocess.raw_floors(ctx["app_url"], ctx["seeded"], seconds, names)
        )

    if reads:
        print(f"read: declarations(first: 50), 5 fields per node, {rounds} rounds", flush=True)
        floor = raw("raw_read") if "floors" in groups else None
        results.update(interleaved(commands, reads, seconds, rounds, floor))
    if "read" in groups:
        for scenario in (loads["read"][1], loads["read"][2]):  # the app's persisted read, the peer
            results[scenario.key + "_paced"] = paced(commands, scenario, seconds)
    if "floors" in groups:  # what the floor's own tail is at the same share of its own peak
        results["read_floor_starlette_paced"] = paced(commands, loads["floors"][0], seconds)
    if "write" in groups:
        print("write: createDeclaration (with its chained audit entry)", flush=True)
        floor = raw("raw_write_spread", "raw_write_hot")
        results.update(interleaved(commands, loads["write"], seconds, rounds, floor))
    if "public" in groups:
        print("public: recipientForm and submitDeclaration with fresh tokens", flush=True)
        results.update(interleaved(commands, loads["public"], max(3, seconds // 2), 1))
    return results


def ratios(r: dict[str, Any]) -> dict[str, float]:
    def ratio(a: str, b: str, key: str = "rps", b_key: str = "rps") -> float:
        if not (r.get(a) and r.get(b) and r[b][b_key]):
            return 0.0
        paired = r[a].get("rounds_rps"), r[b].get("rounds_rps")
        if a != b and paired[0] and paired[1] and len(paired[0]) == len(paired[1]):
            # Interleaved loads: the median of each round's ratio, so that the machine's
            # drift between rounds cancels out.
            return round(statistics.median(x / y for x, y in zip(*paired, strict=True)), 2)
        return round(r[a][key] / r[b][b_key], 2)

    table = {
        "read vs PostGraphile": ratio("read_app", "read_postgraphile"),
        "read (persisted) vs PostGraphile": ratio("read_app_persisted", "read_postgraphile"),
        "read vs Starlette + asyncpg floor": ratio("read_app", "read_floor_starlette"),
        "read (persisted) vs Starlette floor": ratio("read_app_persisted", "read_floor_starlette"),
        "read vs plain Strawberry": ratio("read_app", "read_floor_strawberry"),
        "write, 100 firms vs raw asyncpg": ratio("write_spread", "raw_write_spread", b_key="ops"),
        "write, hot firm vs raw asyncpg": ratio("write_hot", "raw_write_hot", b_key="ops"),
        "write (persisted), 100 firms vs raw asyncpg": ratio(
            "write_spread_persisted", "raw_write_spread", b_key="ops"
        ),
        "write (persisted), hot firm vs raw asyncpg": ratio(
            "write_hot_persisted", "raw_write_hot", b_key="ops"
        ),
        "write (persisted), 100 firms vs Starlette + asyncpg write floor (HTTP)": ratio(
            "write_spread_persisted", "write_floor_spread"
        ),
        "write (persisted), hot firm vs Starlette + asyncpg write floor (HTTP)": ratio(
            "write_hot_persisted", "write_floor_hot"
        ),
        "write, 100 firms vs Starlette + asyncpg write floor (HTTP)": ratio(
            "write_spread", "write_floor_spread"
        ),
        "write, hot firm vs Starlette + asyncpg write floor (HTTP)": ratio(
            "write_hot", "write_floor_hot"
        ),
        "verification vs bare hashlib (bytes in memory)": ratio(
            "verify", "verify", "bare_seconds", "seconds"
        ),
        "verification vs bare hashlib (bytes streamed from PostgreSQL)": ratio(
            "verify", "verify", "streamed_floor_seconds", "seconds"
        ),
        "pack time / bare xhtml2pdf": ratio("pack", "pack", "seconds", "bare_seconds"),
        "read p99 / p50 (persisted, full load)": ratio(
            "read_app_persisted", "read_app_persisted", "p99_ms", "p50_ms"
        ),
        "read p99 / p50 (persisted, 70 % of peak)": ratio(
            "read_app_persisted_paced", "read_app_persisted_paced", "p99_ms", "p50_ms"
        ),
        "read (persisted) load held for that p99, share of the peak just before": r.get(
            "read_app_persisted_paced", {}
        ).get("share_of_peak", 0.0),
        "PostGraphile p99 / p50 at 70 % of its peak": ratio(
            "read_postgraphile_paced", "read_postgraphile_paced", "p99_ms", "p50_ms"
        ),
        "Starlette + asyncpg floor p99 / p50 at 70 % of its peak": ratio(
            "read_floor_starlette_paced", "read_floor_starlette_paced", "p99_ms", "p50_ms"
        ),
    }
    return {name: value for name, value in table.items() if value}


def report(results: dict[str, Any], table: dict[str, float], partial: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-partial" if partial else "")
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
        if "p50_ms" in r:
            lines.append(
                f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['peak_rss_mb']} |"
            )
    lines += ["", "| in-process | value |", "|---|---|"]
    for name, r in results.items():
        if "p50_ms" not in r:
            lines.append(f"| {name} | {json.dumps(r)} |")
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{stamp}.md").write_text(text)
    if not partial:
        (RESULTS / "latest.md").write_text(text)
    print("\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per scenario")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the HTTP loads (median)"
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups of scenarios (of {', '.join(GROUPS)}); a partial run "
        "does not replace latest.md",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database the last run seeded (not with public: its tokens are spent; "
        "the pack of inprocess fails once earlier write runs add more than 4,500 audit entries "
        "to the 500 its firm's period holds)",
    )
    args = parser.parse_args()
    groups = set(args.only.split(","))
    if groups - set(GROUPS) or (args.reuse and "public" in groups):
        parser.error(f"--only takes {', '.join(GROUPS)}; --reuse cannot run public")
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    ctx = asyncio.run(prepare(args.seconds, args.reuse))
    results = run_http(ctx, groups, args.rounds)
    if "inprocess" in groups:
        results.update(asyncio.run(inprocess.run(ctx["app_url"], ctx["seeded"], args.seconds)))
    report(results, ratios(results), partial=groups != set(GROUPS))


if __name__ == "__main__":
    main()
