"""The ``coverproof`` command: serve, migrate, db url / seal, export-schema, audit, packs
sweep."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import ConfigError, Settings, read_settings

if TYPE_CHECKING:
    from app.audit.chain import Verification

EMBEDDED_DATABASE = "coverproof"


def _embedded_urls(settings: Settings) -> tuple[str, str]:
    """Start the embedded server, provision it, and return (app URL, owner URL)."""
    from app.db import bootstrap, embedded  # noqa: PLC0415 (only when embedded)

    server = embedded.start(settings.data_dir / "pg")
    owner_url = server.url(bootstrap.OWNER_ROLE, EMBEDDED_DATABASE)
    bootstrap.provision(server.url(server.superuser, "postgres"), EMBEDDED_DATABASE)
    return server.url(bootstrap.APP_ROLE, EMBEDDED_DATABASE), owner_url


def _owner_url(settings: Settings) -> str:
    if settings.admin_database_url is not None:
        return settings.admin_database_url.get_secret_value()
    if settings.database_url is not None:
        raise ConfigError(["COVERPROOF_ADMIN_DATABASE_URL (coverproof_owner) is not set."])
    return _embedded_urls(settings)[1]


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415

    settings.check_production()
    if settings.database_url is None:
        app_url, owner_url = _embedded_urls(settings)
        os.environ["COVERPROOF_DATABASE_URL"] = app_url
        os.environ["COVERPROOF_ADMIN_DATABASE_URL"] = owner_url
    elif settings.admin_database_url is not None or settings.seal_database_url is not None:
        _migrate(settings)
    from app.main import create_app  # noqa: PLC0415

    # Built once here, as each worker builds it: a setting it refuses (a signing key that is no
    # key) stops this command. With --workers, each worker failed alike, and uvicorn's
    # supervisor started it again without end.
    create_app()
    host, port = args.host or settings.host, args.port or settings.port
    print(f"CoverProof API: http://{host}:{port}/graphql", flush=True)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        **SERVER_OPTIONS,
    )
    return 0


# How `coverproof serve` runs uvicorn (tests/http/test_served.py serves the app so too).
SERVER_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,
    "access_log": False,  # paths of recipients' links carry tokens
    "server_header": False,
    # No WebSocket: the app serves none, and uvicorn answered an upgrade to any path with its
    # own 403, without the security headers every response carries. The request now reaches
    # the app, which refuses it (app.http.middleware.RefuseUpgrade).
    "ws": "none",
    # A lifespan that fails stops the server: under "auto" uvicorn took the failure for "no
    # lifespan" and served on, every request answered by its own bare 500.
    "lifespan": "on",
    "log_level": "info",
}


def _migrate(settings: Settings) -> None:
    """As coverproof_owner; sealed after, when COVERPROOF_SEAL_DATABASE_URL names an
    administrator."""
    from app.db import bootstrap  # noqa: PLC0415

    if settings.seal_database_url is not None:
        if settings.admin_database_url is None:
            # Without it the owner's URL would be the embedded server's: the database named
            # for sealing would be sealed unmigrated, and its migrations then refused.
            raise ConfigError(
                [
                    "COVERPROOF_ADMIN_DATABASE_URL (coverproof_owner) is not set, and sealing "
                    "needs the database migrated first."
                ]
            )
        admin = settings.seal_database_url.get_secret_value()
        bootstrap.migrate_sealed(admin, _owner_url(settings))
    else:
        bootstrap.migrate(_owner_url(settings))


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    _migrate(settings)
    print("migrated")
    return 0


def db_url(settings: Settings, args: argparse.Namespace) -> int:
    """The owner URL without its password: printed, it would reach the terminal's scrollback
    and, given to psql on its command line, every user's ``ps``. psql asks for it, or takes
    it from PGPASSWORD or ~/.pgpass; the embedded database's URL has none. A password in the
    query (``?password=``, or the client key's ``?sslpassword=``), which libpq and asyncpg
    both read, is left out too."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(_owner_url(settings))
    url = url._replace(password=None).difference_update_query(["password", "sslpassword"])
    print(url.render_as_string(hide_password=False))
    return 0


def db_seal(settings: Settings, args: argparse.Namespace) -> int:
    """Seal the audit trail against coverproof_owner as it is now (app/db/seal.py)."""
    from app.db import bootstrap, seal  # noqa: PLC0415

    if settings.seal_database_url is not None:
        if settings.admin_database_url is None:
            raise ConfigError(
                [
                    "COVERPROOF_ADMIN_DATABASE_URL (coverproof_owner) is not set: sealing reads "
                    "the migrations' version logged in as the owner, never as the administrator."
                ]
            )
        url = settings.seal_database_url.get_secret_value()
        owner = settings.admin_database_url.get_secret_value()
    elif settings.database_url is None and settings.admin_database_url is None:
        from app.db import embedded  # noqa: PLC0415 (only when embedded)

        server = embedded.start(settings.data_dir / "pg")
        url = server.url(server.superuser, EMBEDDED_DATABASE)
        owner = server.url(bootstrap.OWNER_ROLE, EMBEDDED_DATABASE)
    else:
        raise ConfigError(
            [
                "COVERPROOF_SEAL_DATABASE_URL (an administrator who may create event triggers) "
                "is not set."
            ]
        )
    found = asyncio.run(bootstrap.migrated(owner))
    asyncio.run(seal.at(url, head=bootstrap.head_revision(), migrated=found))
    print("sealed")
    return 0


def export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from app.schema import build_schema  # noqa: PLC0415

    Path(args.path).write_text(build_schema(production=False).as_str() + "\n")
    print(f"wrote {args.path}")
    return 0


# What a revoked key's conflicting checkpoint says, by whether the key made its signature.
_SIGNED = {
    True: "the key signed it, so the key was used to sign another history",
    False: "the key did not sign it, so someone wrote the row",
    None: "its signature is unchecked (list the key's public half as retired to check it)",
}


def audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    from app.audit import signing  # noqa: PLC0415
    from app.audit.verify_all import UnknownFirm, shared_witness, verify_firms  # noqa: PLC0415

    firm: uuid.UUID | None = args.firm
    if args.keys:  # the published public halves: no private key on an auditor's host
        try:
            published = signing.retired_keys(Path(args.keys).read_text())
        except (OSError, UnicodeDecodeError, ConfigError):
            return _refused(ValueError(f"--keys: {args.keys} is not a PEM file of public keys"))
        # The published file leaves revoked keys out: their ids come from --revoked (or the
        # setting), or their checkpoints read as another's.
        revoked = signing.revoked_key_ids(
            settings.audit_revoked_key_ids if args.revoked is None else args.revoked
        )
        trusted: Mapping[str, Ed25519PublicKey] = {
            kid: public for public in published if (kid := signing.key_id(public)) not in revoked
        }
        revoked_keys: Mapping[str, Ed25519PublicKey] = {
            signing.key_id(p): p for p in published if signing.key_id(p) in revoked
        }
    else:
        key = signing.load(settings)
        trusted, revoked, revoked_keys = key.trusted, key.revoked, key.revoked_keys
    try:
        seen = shared_witness(settings.rate_limit_storage, settings.rate_limit_prefix)
    except ValueError as error:
        return _refused(error)

    url = _owner_url(settings)  # outside the loop below: it may start the embedded database

    async def verified() -> list[tuple[uuid.UUID | None, Verification]]:
        try:
            return await verify_firms(url, firm, trusted, args.all, revoked, revoked_keys, seen)
        finally:
            if seen is not None:
                await seen.close()

    try:
        results = asyncio.run(verified())
    except UnknownFirm as error:
        return _refused(error)
    for firm_id, result in results:  # first: a broken chain's are evidence too
        for conflict in result.revoked_conflicts:
            print(
                f"WARNING firm {firm_id}: checkpoint {conflict.checkpoint_id} at seq "
                f"{conflict.seq}, naming revoked key {conflict.key_id}, disagrees with the chain: "
                + _SIGNED[conflict.signed]
            )
    broken = [(firm_id, result) for firm_id, result in results if not result.ok]
    for firm_id, result in broken:  # every one: an operator repairs them all, not the first
        chain = f"firm {firm_id}" if firm_id else "the platform chain"
        print(f"BROKEN {chain} at seq {result.failure_seq}: {result.failure_reason}")
    if broken:
        return 1
    for firm_id, result in results:
        if firm_id is None:  # checkpoints are firms' (docs/audit.md): say what "ok" means here
            print(
                f"UNSIGNED the platform chain ({result.entries_checked} entries): no checkpoint "
                "signs it, so it links up, but so would all of it rewritten from its first entry"
            )
    total = sum(result.entries_checked for _, result in results)
    print(f"ok: {len(results)} chain(s), {total} entries verified")
    return 0


def _refused(error: Exception) -> int:
    """A command that cannot do what it was asked: why, on stderr, and exit code 2."""
    print(error, file=sys.stderr)
    return 2


def audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from app.audit import signing  # noqa: PLC0415
    from app.audit.verify_all import UnknownFirm, export_firm  # noqa: PLC0415

    key = signing.load(settings)

    async def write() -> None:
        async for line in export_firm(_owner_url(settings), args.firm, key):
            sys.stdout.write(line)

    try:
        asyncio.run(write())
    except UnknownFirm as error:
        return _refused(error)
    return 0


def audit_reanchor(settings: Settings, args: argparse.Namespace) -> int:
    from app.audit import signing  # noqa: PLC0415
    from app.audit.verify_all import UnknownFirm, reanchor_firms  # noqa: PLC0415
    from app.errors import AuditChainBroken  # noqa: PLC0415

    key = signing.load(settings)
    try:
        results = asyncio.run(reanchor_firms(_owner_url(settings), key, args.firm))
    except UnknownFirm as error:
        return _refused(error)
    for firm_id, result in results:
        if isinstance(result, AuditChainBroken):
            print(f"NOT SIGNED firm {firm_id}: {result.message}")
        elif result is not None:
            print(f"re-anchored firm {firm_id} at seq {result.seq} with key {result.key_id}")
    print(f"{len(results)} chain(s)")
    return 1 if any(isinstance(r, AuditChainBroken) for _, r in results) else 0


def audit_forget_witness(settings: Settings, args: argparse.Namespace) -> int:
    """Forget what the servers' witness saw of a chain (``app/audit/witness.py``): after the
    database was restored from a backup, and the entries it lost are accounted for."""
    from app.audit.verify_all import shared_witness  # noqa: PLC0415
    from app.audit.witness import chain_of  # noqa: PLC0415

    try:
        seen = shared_witness(settings.rate_limit_storage, settings.rate_limit_prefix)
    except ValueError as error:
        return _refused(error)
    if seen is None:
        return _refused(ValueError("The servers keep their witness in their own process."))
    chain = chain_of(args.firm)

    async def forget() -> None:
        try:
            await seen.forget(chain)
        finally:
            await seen.close()

    try:
        asyncio.run(forget())
    except Exception:  # the client's message may name the host; never the password, but neither
        return _refused(ValueError("The witness's Redis could not be reached (not printed)."))
    print(f"forgot the witness of {'the platform chain' if args.firm is None else args.firm}")
    return 0


def audit_key(settings: Settings, args: argparse.Namespace) -> int:
    from app.audit import signing  # noqa: PLC0415

    sys.stdout.write(signing.load(settings).public_pem())
    return 0


def persisted_load(settings: Settings, args: argparse.Namespace) -> int:
    """Load a manifest of trusted documents (Apollo's format or a plain id -> text map): all of
    them, or, if one is refused, none (exit code 2)."""
    import json  # noqa: PLC0415

    from app.db.engine import create_engine, session_factory  # noqa: PLC0415
    from app.db.tenant import transaction  # noqa: PLC0415
    from app.partners import documents  # noqa: PLC0415

    try:
        docs = documents.parse_manifest(json.loads(Path(args.file).read_text()))
    except (OSError, ValueError) as error:
        return _refused(ValueError(f"not loaded: {error}"))

    async def load() -> int:
        engine = create_engine(_owner_url(settings), pool_size=1)
        try:
            async with transaction(session_factory(engine)) as session:
                return await documents.store(session, docs)
        finally:
            await engine.dispose()

    added = asyncio.run(load())
    print(f"loaded {len(docs)} document(s), {added} new")
    return 0


def _app_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return _embedded_urls(settings)[0]


def packs_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """What the server's periodic sweep does, once (or, with --dry-run, only listed): after a
    restore, the PDFs of packs made after its point are listed here before anything deletes
    them."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from app.db.engine import create_engine, session_factory  # noqa: PLC0415
    from app.evidence import sweep  # noqa: PLC0415
    from app.evidence.stores import open_storage  # noqa: PLC0415

    async def run() -> list[str]:
        storage = open_storage(settings)
        # The app role, as the server's sweep: the packs it reads are the ones RLS shows it.
        engine = create_engine(_app_url(settings), pool_size=1)
        await storage.open()
        try:
            before = datetime.now(UTC) - timedelta(minutes=args.older_than_minutes)
            return await sweep.sweep(session_factory(engine), storage, before, dry_run=args.dry_run)
        finally:
            await storage.close()
            await engine.dispose()

    orphans = asyncio.run(run())
    for key in orphans:
        print(f"{'no pack names' if args.dry_run else 'deleted'} {key}")
    done = "found (nothing deleted)" if args.dry_run else "deleted"
    print(f"{len(orphans)} stored pack PDF(s) no pack names {done}")
    return 0


def _minutes(text: str) -> int:
    """Minutes of age, none fewer than none: a cut-off in the future names every file."""
    minutes = int(text)
    if minutes < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return minutes


def _firm_id(text: str) -> uuid.UUID:
    """A firm's id, refused as usage (exit code 2) when it is none: as a traceback its exit
    code was 1, which `audit verify` gives for a broken chain."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a firm id (a UUID)") from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="coverproof", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API (embedded database by default)")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--workers", type=int, default=1)
    run.set_defaults(handler=serve)
    commands.add_parser("migrate", help="apply migrations as coverproof_owner").set_defaults(
        handler=migrate
    )
    db = commands.add_parser("db", help="database helpers").add_subparsers(dest="db", required=True)
    db.add_parser("url", help="print the owner URL, for psql").set_defaults(handler=db_url)
    db.add_parser("seal", help="seal the audit tables against their owner").set_defaults(
        handler=db_seal
    )
    export = commands.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--path", default="schema.graphql")
    export.set_defaults(handler=export_schema)
    audit = commands.add_parser("audit", help="audit trail").add_subparsers(
        dest="audit", required=True
    )
    verify = audit.add_parser("verify", help="verify every firm's chain (exit 1 on a break)")
    verify.add_argument("--firm", type=_firm_id)
    verify.add_argument("--all", action="store_true", help="also the platform chain")
    verify.add_argument(
        "--keys",
        help="a PEM file of the trusted public keys (/.well-known/coverproof-audit-keys.pem), "
        "to verify without the signing key",
    )
    verify.add_argument(
        "--revoked",
        help="with --keys: the revoked key ids (default COVERPROOF_AUDIT_REVOKED_KEY_IDS)",
    )
    verify.set_defaults(handler=audit_verify)
    export = audit.add_parser("export", help="one firm's trail as JSON Lines, to stdout")
    export.add_argument("--firm", type=_firm_id, required=True)
    export.set_defaults(handler=audit_export)
    reanchor = audit.add_parser(
        "reanchor",
        help="sign chains a revoked key signed past any trusted key's checkpoint, once checked "
        "against kept exports",
    )
    scope = reanchor.add_mutually_exclusive_group(required=True)
    scope.add_argument("--firm", type=_firm_id)
    scope.add_argument("--all", action="store_true", help="every such chain")
    reanchor.set_defaults(handler=audit_reanchor)
    forget = audit.add_parser(
        "forget-witness",
        help="forget what the audit witness was told of a chain, once a restored database's "
        "loss of entries is accounted for",
    )
    chain = forget.add_mutually_exclusive_group(required=True)
    chain.add_argument("--firm", type=_firm_id)
    chain.add_argument("--platform", action="store_true", help="the platform chain")
    forget.set_defaults(handler=audit_forget_witness)
    audit.add_parser("public-key", help="the checkpoint signing key (PEM)").set_defaults(
        handler=audit_key
    )
    packs = commands.add_parser("packs", help="evidence-pack PDFs").add_subparsers(
        dest="packs", required=True
    )
    swept = packs.add_parser("sweep", help="delete stored PDFs no pack names (or list them)")
    swept.add_argument("--dry-run", action="store_true", help="list them; delete nothing")
    swept.add_argument("--older-than-minutes", type=_minutes, default=60)
    swept.set_defaults(handler=packs_sweep)
    persisted = commands.add_parser("persisted-queries", help="the trusted documents")
    persisted_commands = persisted.add_subparsers(dest="persisted", required=True)
    load = persisted_commands.add_parser("load", help="add a manifest's documents")
    load.add_argument("file")
    load.set_defaults(handler=persisted_load)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = read_settings()
        handler = args.handler
        return int(handler(settings, args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"configuration: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
