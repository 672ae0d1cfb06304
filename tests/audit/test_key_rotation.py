"""After the audit signing key is rotated, checkpoints the old key signed still verify: on the
server, with the old public half configured as retired, and offline, with the keys file the
server publishes. Without it they are refused, naming the key they name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit.signing import SigningKey, retired_keys
from app.config import ConfigError, Settings
from app.main import create_app
from tests.audit.test_tamper import (
    VERIFY,
    append,
    export,
    new_trail,
    run_verifier,
    sign_head,
)
from tests.conftest import Database, http_client, make_settings, private_pem, started
from tests.factories import Members, gql


@asynccontextmanager
async def _client(
    database: Database, settings: Settings, tmp_path: Path, key: SigningKey, retired: str
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """An app signing with ``key``, trusting ``retired`` too, on the same database and secret
    as the test app (so the members' sessions hold)."""
    assert settings.secret_key is not None
    configured = make_settings(
        database,
        tmp_path,
        secret_key=settings.secret_key.get_secret_value(),
        audit_signing_key=private_pem(key.private),
        audit_retired_public_keys=retired,
    )
    async for app in started(create_app(configured)):
        async with http_client(app) as client:
            yield app, client


async def test_checkpoints_a_retired_key_signed_still_verify(
    database: Database,
    settings: Settings,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    old = SigningKey(Ed25519PrivateKey.generate())
    new = SigningKey(Ed25519PrivateKey.generate())
    trail = await new_trail(members, app_sessions, 2)
    await sign_head(app_sessions, trail, old)  # before the rotation
    await append(app_sessions, trail.actor, 1, start=3)
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
