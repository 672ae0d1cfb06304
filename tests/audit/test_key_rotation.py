"""After the audit signing key is rotated, checkpoints the old key signed still verify: on the
server, with the old public half configured as retired, and offline, with the keys file the
server publishes. Without it they are refused, naming the key they name. A key that leaked is
revoked: what it signed vouches for nothing anywhere, and it is no longer published."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import checkpoints
from app.audit.signing import (
    SigningKey,
    checkpoint_payload,
    load,
    retired_keys,
    revoked_key_ids,
)
from app.audit.verify_all import reanchor_firms
from app.cli import main
from app.config import ConfigError, Settings
from app.db.models import AuditCheckpoint
from app.db.tenant import tenant_transaction
from app.errors import AuditChainBroken
from app.main import create_app
from tests.audit.test_offline_verifier import _verifier
from tests.audit.test_tamper import (
    CHECKPOINT,
    VERIFY,
    Trail,
    append,
    export,
    new_trail,
    rewrite,
    run_verifier,
    sign_head,
    signing_key,
)
from tests.conftest import Database, http_client, make_settings, private_pem, started
from tests.factories import Members, gql


@asynccontextmanager
async def _client(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    key: SigningKey,
    retired: str,
    revoked: str = "",
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """An app signing with ``key``, trusting ``retired`` too (but not ``revoked``), on the same
    database and secret as the test app (so the members' sessions hold)."""
    assert settings.secret_key is not None
    configured = make_settings(
        database,
        tmp_path,
        secret_key=settings.secret_key.get_secret_value(),
        audit_signing_key=private_pem(key.private),
        audit_retired_public_keys=retired,
        audit_revoked_key_ids=revoked,
    )
    async for app in started(create_app(configured)):
        async with http_client(app) as client:
            yield app, client


async def _signed_then_rotated(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> tuple[SigningKey, SigningKey, Trail]:
    """(the old key, the new key, a trail): two entries the old key signed, then a third."""
    old = SigningKey(Ed25519PrivateKey.generate())
    trail = await new_trail(members, sessions, 2)
    await sign_head(sessions, trail, old)  # a genuine checkpoint, at seq 2
    await append(sessions, trail.actor, 1, start=3)
    return old, SigningKey(Ed25519PrivateKey.generate()), trail


async def test_checkpoints_a_retired_key_signed_still_verify(
    database: Database,
    settings: Settings,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    old, new, trail = await _signed_then_rotated(members, app_sessions)
    # The rotated deployment lists the old key as retired: signing goes on from its checkpoint.
    await sign_head(app_sessions, trail, SigningKey(new.private, retired=(old.public,)))

    async with _client(database, settings, tmp_path / "a", new, old.public_pem()) as (_, client):
        body = await gql(client, VERIFY, None, trail.admin)
        assert body["data"]["verifyAuditChain"] == {
            "ok": True,
            "entriesChecked": 3,
            "headSeq": 3,
            "checkpointsChecked": 2,
            "failure": None,
        }, body
        published = (await client.get("/.well-known/coverproof-audit-keys.pem")).text
        assert published == new.public_pem() + old.public_pem()

    # The keys file the server publishes is all the offline verifier needs.
    lines = await export(app_sessions, trail.firm_id, new)
    export_path, keys_path = tmp_path / "export.jsonl", tmp_path / "keys.pem"
    export_path.write_text("".join(lines))
    keys_path.write_text(published)
    code, out = await run_verifier(export_path, keys_path)
    assert code == 0, out
    assert ": entries 1..3 (3) of 3 intact, 2 signed checkpoint(s) verified, " in out

    async with _client(database, settings, tmp_path / "b", new, "") as (_, client):
        body = await gql(client, VERIFY, None, trail.admin)
        result = body["data"]["verifyAuditChain"]
        assert (result["ok"], result["checkpointsChecked"]) == (False, 0), body
        assert result["failure"]["seq"] == 2
        assert result["failure"]["reason"].endswith(f" names key {old.key_id}, not one of ours")
        published = (await client.get("/.well-known/coverproof-audit-keys.pem")).text
        assert published == new.public_pem()


def test_retired_keys_are_ed25519_public_keys_and_nothing_else() -> None:
    one, two = (SigningKey(Ed25519PrivateKey.generate()) for _ in range(2))
    assert retired_keys("") == ()
    keys = retired_keys(f"{one.public_pem()}\n{two.public_pem()}")
    assert [k.public_bytes_raw() for k in keys] == [
        one.public.public_bytes_raw(),
        two.public.public_bytes_raw(),
    ]
    ec = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for bad in ("not a key", one.public_pem() + "trailing words", ec, private_pem(one.private)):
        with pytest.raises(ConfigError):
            retired_keys(bad)


CHECKPOINTS = "{ auditCheckpoints { seq keyId keyRevoked } }"
CONFLICTS = (
    "{ verifyAuditChain { revokedConflicts "
    "revokedConflictDetails { checkpointId seq keyId signedByKey } } }"
)
EXPORT = "{ exportAuditLog { jsonl } }"


async def _signed_by(
    sessions: async_sessionmaker[AsyncSession],
    trail: Trail,
    key: SigningKey,
    seq: int,
    signer: SigningKey | None = None,
) -> uuid.UUID:
    """A checkpoint ``key`` signs at ``seq`` over a hash the chain never had, stored as the app
    would store one (the app role may insert checkpoints): what a leaked key makes possible.
    With ``signer``, one naming ``key`` that ``signer`` signed instead. Its id."""
    forged, signed_at = hashlib.sha256(b"a chain that never was").digest(), datetime.now(UTC)
    checkpoint_id = uuid.uuid4()
    async with tenant_transaction(sessions, trail.firm_id, trail.owner.user_id) as session:
        session.add(
            AuditCheckpoint(
                id=checkpoint_id,
                firm_id=trail.firm_id,
                seq=seq,
                head_hash=forged,
                signed_at=signed_at,
                key_id=key.key_id,
                signature=(signer or key).sign(
                    checkpoint_payload(trail.firm_id, seq, forged, signed_at)
                ),
                created_by="system",
            )
        )
    return checkpoint_id


async def test_a_revoked_keys_checkpoints_vouch_for_nothing(
    database: Database,
    settings: Settings,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leaked, new, trail = await _signed_then_rotated(members, app_sessions)
    kept_path = tmp_path / "kept.jsonl"  # what the firm kept, before the key leaked
    kept_path.write_text("".join(await export(app_sessions, trail.firm_id, leaked)))
    forged = await _signed_by(app_sessions, trail, leaked, 3)  # the key's holder signs at will
    beyond = await _signed_by(app_sessions, trail, leaked, 9)  # past the head
    # A row naming the leaked key that the key never signed: someone wrote it (with another
    # key's signature), which says something else than the key's use.
    written = await _signed_by(app_sessions, trail, leaked, 5, signer=new)

    # Merely retired, the leaked key is still trusted: its forgery stands against the chain.
    async with _client(database, settings, tmp_path / "a", new, leaked.public_pem()) as (_, c):
        result = (await gql(c, VERIFY, None, trail.admin))["data"]["verifyAuditChain"]
        assert (result["ok"], result["failure"]["seq"]) == (False, 3), result
        assert (await gql(c, CHECKPOINT, None, trail.admin))["errors"], "signed over a forgery"

    revoked = f"{leaked.key_id}, {'0' * 16}"
    async with _client(database, settings, tmp_path / "b", new, leaked.public_pem(), revoked) as (
        _,
        client,
    ):
        body = await gql(client, VERIFY, None, trail.admin)
        assert body["data"]["verifyAuditChain"] == {
            "ok": True,
            "entriesChecked": 3,
            "headSeq": 3,
            "checkpointsChecked": 0,
            "failure": None,
        }, body
        # What it signed against the chain is reported (its genuine checkpoint at 2 is not).
        conflicts = await gql(client, CONFLICTS, None, trail.admin)
        found = conflicts["data"]["verifyAuditChain"]
        assert found["revokedConflicts"] == [str(forged), str(written), str(beyond)], conflicts
        # Which of them the key really signed, checked against its public half (still listed).
        assert [
            (c["checkpointId"], c["seq"], c["keyId"], c["signedByKey"])
            for c in found["revokedConflictDetails"]
        ] == [
            (str(forged), 3, leaked.key_id, True),
            (str(written), 5, leaked.key_id, False),
            (str(beyond), 9, leaked.key_id, True),
        ], conflicts
        listed = (await gql(client, CHECKPOINTS, None, trail.admin))["data"]["auditCheckpoints"]
        assert [(c["seq"], c["keyRevoked"]) for c in listed] == [
            (9, True),
            (5, True),
            (3, True),
            (2, True),
        ]
        # Signing never resumes by itself from a chain only the revoked key vouched for: its
        # links would check out however whoever held the key rewrote it.
        refused = await gql(client, CHECKPOINT, None, trail.admin)
        assert refused["errors"][0]["message"] == checkpoints.REVOKED_ONLY, refused
        # An operator re-anchors it, having checked it against exports kept from before.
        monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
        monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
        monkeypatch.setenv("COVERPROOF_AUDIT_SIGNING_KEY", private_pem(new.private))
        monkeypatch.setenv("COVERPROOF_AUDIT_REVOKED_KEY_IDS", revoked)
        reanchor = ["audit", "reanchor", "--firm", str(trail.firm_id)]
        assert await asyncio.to_thread(main, reanchor) == 0
        assert f"re-anchored firm {trail.firm_id} at seq 3 with key {new.key_id}" in (
            capsys.readouterr().out
        )
        verify = ["audit", "verify", "--firm", str(trail.firm_id)]
        says = {
            True: "the key signed it, so the key was used to sign another history",
            False: "the key did not sign it, so someone wrote the row",
            None: "its signature is unchecked (list the key's public half as retired to check it)",
        }
        # The operator's environment lists the revoked key's id but not its public half, then
        # lists that too: only then can it say which conflicting row the key really signed.
        for retired, signed in (
            ("", (None, None, None)),
            (leaked.public_pem(), (True, False, True)),
        ):
            monkeypatch.setenv("COVERPROOF_AUDIT_RETIRED_PUBLIC_KEYS", retired)
            assert await asyncio.to_thread(main, verify) == 0
            warned = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
            assert warned == [
                f"WARNING firm {trail.firm_id}: checkpoint {c} at seq {seq}, naming revoked key "
                f"{leaked.key_id}, disagrees with the chain: {says[verdict]}"
                for c, seq, verdict in zip(
                    (forged, written, beyond), (3, 5, 9), signed, strict=True
                )
            ]
        body = await gql(client, VERIFY, None, trail.admin)
        assert body["data"]["verifyAuditChain"]["checkpointsChecked"] == 1, body
        made = await gql(client, CHECKPOINT, None, trail.admin)  # the head is signed already
        assert made["data"]["createAuditCheckpoint"]["checkpoint"]["seq"] == 3, made
        published = (await client.get("/.well-known/coverproof-audit-keys.pem")).text
        assert published == new.public_pem()  # retired, but revoked: no longer published
        lines = (await gql(client, EXPORT, None, trail.admin))["data"]["exportAuditLog"]["jsonl"]

    assert leaked.key_id not in lines  # neither its checkpoints nor its key are exported
    export_path, keys_path = tmp_path / "export.jsonl", tmp_path / "keys.pem"
    export_path.write_text(lines)
    keys_path.write_text(published)
    code, out = await run_verifier(export_path, keys_path)
    assert code == 0, out
    assert ": entries 1..3 (3) of 3 intact, 1 signed checkpoint(s) verified, " in out

    # The export kept from before is signed by the key now revoked: given for it alone, it
    # checks the new export against what the firm held; it never vouches for the new one.
    leaked_path = tmp_path / "leaked.pem"
    leaked_path.write_text(leaked.public_pem())
    code, out = await _verifier(export_path, keys_path, "--against", kept_path)
    assert (code, out) == (
        1,
        f"BROKEN: {kept_path} does not verify: line 6: the export is not signed by a key given\n",
    )
    against = ("--against", kept_path, "--kept-keys", leaked_path)
    code, out = await _verifier(export_path, keys_path, *against)
    assert code == 0, out
    assert out.endswith(", agrees with 1 earlier export(s) at 3 seq(s)\n"), out
    code, out = await _verifier(kept_path, keys_path, *against)
    assert (code, out) == (1, "BROKEN: line 6: the export is not signed by a key given\n"), out


async def test_a_chain_only_a_revoked_key_signed_waits_for_an_operator(
    app: Starlette,
    database: Database,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A chain only a revoked key signed is not signed by the periodic checkpointer; once an
    operator re-anchors it, the seq the revoked key signed holds the platform key's checkpoint
    too (one per seq and key), and nothing more is signed while the chain stands still."""
    leaked = SigningKey(Ed25519PrivateKey.generate())
    platform = signing_key(app)  # so every other firm signed meanwhile stays verifiable
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, leaked)
    revoking = SigningKey(platform.private, (leaked.public,), frozenset({leaked.key_id}))

    async def signed() -> list[Any]:
        await checkpoints.checkpoint_due_firms(app_sessions, revoking)
        async with tenant_transaction(app_sessions, trail.firm_id) as session:
            found = await session.execute(
                select(AuditCheckpoint.seq, AuditCheckpoint.key_id).order_by(
                    AuditCheckpoint.signed_at
                )
            )
            return list(found.all())

    assert await signed() == [(2, leaked.key_id)]
    [(firm, made)] = await reanchor_firms(database.owner_url, revoking, trail.firm_id)
    assert firm == trail.firm_id
    assert isinstance(made, AuditCheckpoint)
    assert (made.seq, made.key_id, made.created_by) == (2, platform.key_id, "operator:reanchor")
    assert await signed() == [(2, leaked.key_id), (2, platform.key_id)]


async def test_a_chain_a_revoked_key_signed_past_a_trusted_checkpoint_waits_for_an_operator(
    app: Starlette,
    database: Database,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """A trusted key signed seq 2, a key since revoked signed seq 5: entries 3 to 5 were vouched
    for by the revoked key alone, so whoever held it (or the database) could have rewritten
    them. The checkpointer does not sign the chain on from seq 2 by itself; an operator
    re-anchors it (``--all`` finds it) once it has been checked against exports."""
    platform = signing_key(app)
    leaked = SigningKey(Ed25519PrivateKey.generate(), (platform.public,))  # rotated to, later
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, platform)
    await append(app_sessions, trail.actor, 3, start=3)
    assert (await sign_head(app_sessions, trail, leaked)).seq == 5
    revoking = SigningKey(platform.private, (leaked.public,), frozenset({leaked.key_id}))
    await rewrite(superuser_engine, trail.firm_id, [3], relink=True)

    with pytest.raises(AuditChainBroken) as refused:
        await sign_head(app_sessions, trail, revoking)
    assert refused.value.message == checkpoints.REVOKED_SINCE.format(seq=2)
    await checkpoints.checkpoint_due_firms(app_sessions, revoking)
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        last = await checkpoints.newest(session, trail.firm_id, revoking)
    assert last is not None
    assert (last.seq, last.key_id) == (2, platform.key_id)

    anchored = dict(await reanchor_firms(database.owner_url, revoking))
    made = anchored[trail.firm_id]
    assert isinstance(made, AuditCheckpoint)
    assert (made.seq, made.key_id, made.created_by) == (5, platform.key_id, "operator:reanchor")
    assert trail.firm_id not in dict(await reanchor_firms(database.owner_url, revoking))
    await append(app_sessions, trail.actor, 1, start=6)  # settled: signing goes on by itself
    assert (await sign_head(app_sessions, trail, revoking)).seq == 6


async def test_a_row_naming_a_revoked_key_that_it_did_not_sign_holds_nothing_back(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Any role that may add a checkpoint row could name the revoked key in one dated in the
    future, or (its public half still listed) one the key did not sign: counted, either would
    hold the firm's signing back for good, and a re-anchor could not settle the first."""
    platform = signing_key(app)
    leaked = SigningKey(Ed25519PrivateKey.generate())
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, platform)
    revoked = frozenset({leaked.key_id})
    by_id = SigningKey(platform.private, (), revoked)  # its public half not listed
    listed = SigningKey(platform.private, (leaked.public,), revoked)
    for seq, signed_at, key in (
        (999, "now() + interval '100 years'", by_id),
        (998, "now()", listed),
    ):
        async with tenant_transaction(app_sessions, trail.firm_id, trail.owner.user_id) as session:
            await session.execute(
                text(
                    "insert into audit_checkpoints (id, firm_id, seq, head_hash, signed_at, "
                    f"key_id, signature, created_by) values (:id, :firm, :seq, :zero, {signed_at}, "
                    ":key, :signature, 'system')"
                ),
                {
                    "id": uuid.uuid4(),
                    "firm": trail.firm_id,
                    "seq": seq,
                    "zero": bytes(32),
                    "key": leaked.key_id,
                    "signature": bytes(64),
                },
            )
        await append(app_sessions, trail.actor, 1, start=1000 - seq + 2)
        assert (await sign_head(app_sessions, trail, key)).seq == 1000 - seq + 2


def test_a_revoked_key_is_named_by_its_id_and_never_signs(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    key = SigningKey(Ed25519PrivateKey.generate())
    assert revoked_key_ids(f" {key.key_id},{'a' * 16}  {'b' * 16} ") == {
        key.key_id,
        "a" * 16,
        "b" * 16,
    }
    assert revoked_key_ids("") == frozenset()
    for bad in ("not-an-id", key.key_id.upper(), key.key_id[:-1], key.public_pem()):
        with pytest.raises(ConfigError):
            revoked_key_ids(bad)
    configured = make_settings(
        database,
        tmp_path,
        audit_signing_key=private_pem(key.private),
        audit_revoked_key_ids=key.key_id,
    )
    with pytest.raises(ConfigError, match="is revoked"):
        load(configured)
    # The start-up log names the keys, so a revocation that names the wrong key shows.
    other = SigningKey(Ed25519PrivateKey.generate())
    with caplog.at_level(logging.INFO, logger="coverproof"):
        create_app(
            configured.model_copy(
                update={"audit_signing_key": SecretStr(private_pem(other.private))}
            )
        )
    assert (
        f"audit keys: signing with {other.key_id}; trusted {other.key_id}; revoked {key.key_id}"
        in caplog.text
    )
