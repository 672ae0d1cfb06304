"""Evidence packs in S3-compatible storage, against a real S3-protocol server on loopback:
the object's key, metadata and encryption, the presigned download, and an upload that fails
(bucket missing) leaving a failed pack and no object, then a retry that succeeds."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.evidence import sweep
from app.evidence.storage import StorageError
from app.main import create_app
from tests.browser import browser_for, signed_up
from tests.conftest import Database, make_settings, started
from tests.evidence.support import (
    PACK,
    RETRY,
    audit_of,
    download,
    generate,
    generate_then_fail,
    orphaned_pdf,
    pack_row,
    pdf_text,
    s3_client,
    stored_keys,
    submitted_declaration,
    swept_once_old_enough,
)
from tests.mail.smtp import SmtpServer
from tests.partners import CREATE_KEY


async def _app(
    database: Database, smtp: SmtpServer, tmp: Path, moto_url: str, bucket: str
) -> AsyncIterator[Starlette]:
    settings = make_settings(
        database,
        tmp,
        smtp_url=smtp.url,
        storage_url=f"s3://{bucket}/packs",
        s3_endpoint_url=moto_url,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_region="us-east-1",
    )
    async for running in started(create_app(settings)):
        yield running


async def _new_bucket(moto_url: str, prefix: str, versioned: bool = False) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    async with s3_client(moto_url) as s3:
        await s3.create_bucket(Bucket=name)
        if versioned:
            status = {"Status": "Enabled"}
            await s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=status)
    return name


@pytest.fixture(scope="module")
async def bucket(moto_url: str) -> str:
    return await _new_bucket(moto_url, "cp-packs")


@pytest.fixture(scope="module")
async def s3_app(
    database: Database,
    smtp: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
    moto_url: str,
    bucket: str,
) -> AsyncIterator[Starlette]:
    async for running in _app(database, smtp, tmp_path_factory.mktemp("s3"), moto_url, bucket):
        yield running


async def test_a_pack_is_stored_encrypted_and_downloaded_only_through_the_app(
    s3_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    bucket: str,
    superuser_engine: AsyncEngine,
) -> None:
    """The bucket is never handed to a client: the download is the app's signed link, which
    serves the object to a session or an evidence:read key of the firm, checked against its
    SHA-256 and audited as each download is served."""
    firm, other = browser_for(s3_app), browser_for(s3_app)
    async with firm.client, other.client:
        await signed_up(firm, smtp, firm="Bucket Brokers Ltd")
        await signed_up(other, smtp, firm="Other Brokers Ltd")
        carol = await submitted_declaration(firm, smtp, s3_app, "Carol Stored")
        pack = await generate(firm, "S3 pack")
        assert pack["status"] == "READY", pack
        row = await pack_row(superuser_engine, pack["id"])
        assert row.storage_key.startswith(f"packs/{row.firm_id}/{pack['id']}-")
        assert row.storage_key.endswith(".pdf")
        assert row.storage_version is None  # the bucket keeps no versions

        async with s3_client(moto_url) as s3:
            head = await s3.head_object(Bucket=bucket, Key=row.storage_key)
        assert head["ContentType"] == "application/pdf"
        assert head["Metadata"] == {"sha256": pack["sha256"]}
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentLength"] == pack["sizeBytes"]

        keys = {}
        for name, browser, scopes in (
            ("reader", firm, ["EVIDENCE_READ"]),
            ("unscoped", firm, ["DECLARATIONS_READ"]),
            ("stranger", other, ["EVIDENCE_READ"]),
        ):
            made = await browser.gql(CREATE_KEY, {"i": {"name": name, "scopes": scopes}})
            keys[name] = {"authorization": f"Bearer {made['data']['createApiKey']['secret']}"}

        read = await firm.gql(PACK, {"id": pack["id"]})
        url = read["data"]["evidencePack"]["downloadUrl"]
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("https", "testserver"), url
        response = await firm.client.get(parts.path)
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == pack["sha256"] == row.sha256.hex()
        assert response.headers["content-disposition"] == (
            f'attachment; filename="{pack["id"]}.pdf"'
        )
        shown = pdf_text(response.content)
        assert carol.recipient_name in shown
        assert carol.receipt in shown

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=s3_app), base_url="https://testserver"
        ) as bare:
            partner = await bare.get(parts.path, headers=keys["reader"])
            assert partner.status_code == 200, partner.text
            assert partner.content == response.content
            basic = {"authorization": keys["reader"]["authorization"].replace("Bearer", "Basic")}
            for refused in (keys["unscoped"], keys["stranger"], basic, {}):
                assert (await bare.get(parts.path, headers=refused)).status_code == 404
        # A header sent with the firm's own session as well, a key or not: refused, as the API
        # refuses both.
        for header in (keys["reader"], basic):
            assert (await firm.client.get(parts.path, headers=header)).status_code == 404
        assert (await other.client.get(parts.path)).status_code == 404  # another firm's session
    async with superuser_engine.connect() as conn:
        rows = await conn.execute(text("select name, last_used_at from api_keys"))
        used = {row.name: row.last_used_at for row in rows}
    # A key refused here is not spent: its first use is still to come, and to be audited.
    assert used["reader"] is not None
    assert (used["unscoped"], used["stranger"]) == (None, None)

    actions = await audit_of(superuser_engine, pack["id"])
    assert [a.action for a in actions] == [
        "evidence_pack.requested",
        "evidence_pack.generated",
        "evidence_pack.downloaded",  # the session's
        "evidence_pack.downloaded",  # the key's: each download, as it was served
    ]
    assert actions[1].details["storage"] == "s3"
    assert {a.details["via"] for a in actions[2:]} == {"signed_link"}
    assert [a.actor_type for a in actions[2:]] == ["user", "api_key"]


async def test_a_missing_bucket_leaves_a_failed_pack_and_no_object_then_retry_works(
    database: Database,
    smtp: SmtpServer,
    tmp_path: Path,
    moto_url: str,
    superuser_engine: AsyncEngine,
) -> None:
    missing = f"cp-missing-{secrets.token_hex(4)}"
    async for app in _app(database, smtp, tmp_path, moto_url, missing):
        firm = browser_for(app)
        async with firm.client:
            await signed_up(firm, smtp)
            pack = await generate(firm, "Doomed at first")  # no GraphQL error: it commits
            assert pack["status"] == "FAILED", pack
            assert "NoSuchBucket" in pack["failureReason"]
            assert (pack["sha256"], pack["sizeBytes"], pack["pageCount"]) == (None, None, None)
            row = await pack_row(superuser_engine, pack["id"])
            assert (row.status, row.storage_key, row.sha256) == ("failed", None, None)
            read = await firm.gql(PACK, {"id": pack["id"]})
            assert read["data"]["evidencePack"] == {
                "id": pack["id"],
                "status": "FAILED",
                "sha256": None,
                "downloadUrl": None,
            }
            failed = await audit_of(superuser_engine, pack["id"])
            assert [a.action for a in failed] == [
                "evidence_pack.requested",
                "evidence_pack.failed",
            ]
            assert "NoSuchBucket" in failed[1].details["reason"]

            async with s3_client(moto_url) as s3:
                await s3.create_bucket(Bucket=missing)
                listed = await s3.list_objects_v2(Bucket=missing)
                assert listed.get("KeyCount", 0) == 0  # nothing half-made was left behind

                body = await firm.gql(RETRY, {"id": pack["id"]})
                assert "errors" not in body, body
                retried = body["data"]["retryEvidencePack"]["pack"]
                assert retried["status"] == "READY", retried
                assert retried["failureReason"] is None
                row = await pack_row(superuser_engine, pack["id"])
                listed = await s3.list_objects_v2(Bucket=missing)
            assert [o["Key"] for o in listed["Contents"]] == [row.storage_key]
            assert row.sha256.hex() == retried["sha256"]
            actions = [a.action for a in await audit_of(superuser_engine, pack["id"])]
            assert actions[2:] == ["evidence_pack.requested", "evidence_pack.generated"]


async def test_a_pack_whose_request_is_refused_leaves_no_object(
    s3_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    firm = browser_for(s3_app)
    async with firm.client:
        await signed_up(firm, smtp)
        storage = s3_app.state.coverproof.storage
        stored = stored_keys(storage, monkeypatch)
        await generate_then_fail(firm, "Rolled back")
    assert len(stored) == 1
    async with s3_client(moto_url) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket, Prefix=stored[0])
    assert listed.get("KeyCount", 0) == 0


async def test_an_object_no_pack_names_is_swept_once_old_enough(
    s3_app: Starlette, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    firm = browser_for(s3_app)
    async with firm.client:
        await signed_up(firm, smtp, firm="Swept Bucket Ltd")
        await swept_once_old_enough(s3_app, firm, monkeypatch)


@pytest.fixture(scope="module")
async def versioned_bucket(moto_url: str) -> str:
    return await _new_bucket(moto_url, "cp-versioned", versioned=True)


@pytest.fixture(scope="module")
async def versioned_app(
    database: Database,
    smtp: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
    moto_url: str,
    versioned_bucket: str,
) -> AsyncIterator[Starlette]:
    tmp = tmp_path_factory.mktemp("versioned")
    async for running in _app(database, smtp, tmp, moto_url, versioned_bucket):
        yield running


async def test_a_pack_in_a_versioned_bucket_is_read_at_its_own_version(
    versioned_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    versioned_bucket: str,
    superuser_engine: AsyncEngine,
) -> None:
    """With versioning on, the version the upload made is recorded with the pack, and its
    download reads that version: an object overwritten since, by whoever holds the bucket's
    keys, is never served, and the pack still downloads as it was made. (Without versioning
    no version is recorded: the first test here.)"""
    firm = browser_for(versioned_app)
    async with firm.client:
        await signed_up(firm, smtp, firm="Versioned Bucket Ltd")
        pack = await generate(firm, "Versioned")
        assert pack["status"] == "READY", pack
        row = await pack_row(superuser_engine, pack["id"])
        assert row.storage_version
        async with s3_client(moto_url) as s3:
            await s3.put_object(
                Bucket=versioned_bucket, Key=row.storage_key, Body=b"%PDF-1.4 forged"
            )
            head = await s3.head_object(Bucket=versioned_bucket, Key=row.storage_key)
        assert head["VersionId"] != row.storage_version
        response = await download(firm, pack["id"])
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == pack["sha256"]


async def _versions(moto_url: str, bucket: str, key: str) -> tuple[list[str], list[str]]:
    """The versions of ``key`` the bucket keeps, and its delete markers (by version id)."""
    async with s3_client(moto_url) as s3:
        listed = await s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [v["VersionId"] for v in listed.get("Versions", ()) if v["Key"] == key]
    markers = [m["VersionId"] for m in listed.get("DeleteMarkers", ()) if m["Key"] == key]
    return versions, markers


async def test_a_refused_pack_leaves_no_version_of_its_pdf(
    versioned_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a versioned bucket a plain delete keeps the bytes as a noncurrent version behind a
    delete marker: the PDF of a pack that was never on the record would stay readable to
    whoever holds the bucket's keys. Its own version is deleted instead."""
    firm = browser_for(versioned_app)
    async with firm.client:
        await signed_up(firm, smtp, firm="Purged Version Ltd")
        stored = stored_keys(versioned_app.state.coverproof.storage, monkeypatch)
        await generate_then_fail(firm, "Purged")
    [key] = stored
    assert await _versions(moto_url, versioned_bucket, key) == ([], [])


async def test_a_version_delete_the_store_ignores_still_deletes_the_object(
    versioned_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that names a version on upload it does not keep (R2 is reported to) may
    acknowledge that version's delete and keep the object: the object is then deleted plainly,
    so no current object of a pack that was rolled back is left."""
    storage = versioned_app.state.coverproof.storage
    put, stored = storage.put, []

    async def unkept(key: str, data: bytes, sha256: bytes) -> str:
        stored.append(key)
        await put(key, data, sha256)
        return "a-version-never-kept"

    monkeypatch.setattr(storage, "put", unkept)
    firm = browser_for(versioned_app)
    async with firm.client:
        await signed_up(firm, smtp, firm="Unkept Delete Ltd")
        await generate_then_fail(firm, "Unkept delete")
    [key] = stored
    versions, markers = await _versions(moto_url, versioned_bucket, key)
    assert len(versions) == 1  # hidden behind a marker, as a plain delete leaves it
    assert len(markers) == 1
    async with s3_client(moto_url) as s3:
        listed = await s3.list_objects_v2(Bucket=versioned_bucket, Prefix=key)
    assert listed.get("KeyCount", 0) == 0
    assert "outlived the delete of its version" in caplog.text


async def test_a_version_the_store_cannot_read_falls_back_to_the_current_object(
    s3_app: Starlette,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A recorded version that cannot be read (a store that names versions it does not keep,
    as R2 is reported to; a key without s3:GetObjectVersion; a version a lifecycle rule
    expired): the current object is read, and checked against the SHA-256 as ever."""
    firm = browser_for(s3_app)
    async with firm.client:
        await signed_up(firm, smtp, firm="Unkept Versions Ltd")
        pack = await generate(firm, "Unkept")
        async with superuser_engine.begin() as conn:  # past 0012: a ready pack is final
            await conn.execute(text("alter table evidence_packs disable trigger user"))
            await conn.execute(
                text(
                    "update evidence_packs set storage_version = 'no-such-version' where id = :id"
                ),
                {"id": uuid.UUID(pack["id"])},
            )
            await conn.execute(text("alter table evidence_packs enable trigger user"))
        response = await download(firm, pack["id"])
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == pack["sha256"]
    assert "pack object version unreadable" in caplog.text


async def _an_orphan(
    app: Starlette, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, firm_name: str
) -> str:
    """A PDF no pack names, left in ``app``'s store by a new firm's failed pack."""
    firm = browser_for(app)
    async with firm.client:
        await signed_up(firm, smtp, firm=firm_name)
        return await orphaned_pdf(firm, app.state.coverproof.storage, monkeypatch)


@pytest.mark.parametrize("left", ["current", "deleted plainly"])
async def test_the_sweep_deletes_every_version_of_a_pdf_no_pack_names(
    versioned_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    left: str,
) -> None:
    """A plain delete keeps the bytes as a noncurrent version, readable to whoever holds the
    bucket's keys: the sweep deletes each version and delete marker of a PDF no pack names,
    and finds one that only an older version is left of (deleted plainly before this release,
    or by a store that would not delete the version)."""
    state = versioned_app.state.coverproof
    orphan = await _an_orphan(versioned_app, smtp, monkeypatch, f"Every Version {left.title()} Ltd")
    if left == "deleted plainly":
        async with s3_client(moto_url) as s3:
            await s3.delete_object(Bucket=versioned_bucket, Key=orphan)
    versions, markers = await _versions(moto_url, versioned_bucket, orphan)
    assert (len(versions), len(markers)) == (1, left == "deleted plainly")
    later = datetime.now(UTC) + timedelta(seconds=2)
    # The bucket is the module's: what its other tests left is swept too.
    assert orphan in await sweep.sweep(state.sessions, state.storage, before=later)
    assert await _versions(moto_url, versioned_bucket, orphan) == ([], [])
    assert await sweep.sweep(state.sessions, state.storage, before=later) == []


async def test_a_store_that_lists_no_versions_is_swept_as_before(
    s3_app: Starlette,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cloudflare R2 keeps no versions and may not answer ListObjectVersions: the sweep lists
    the current objects and deletes an orphan plainly, as before."""
    state = s3_app.state.coverproof
    orphan = await _an_orphan(s3_app, smtp, monkeypatch, "No Versions Ltd")
    client = state.storage._client
    paginator = client.get_paginator

    def refusing(name: str) -> Any:
        if name != "list_object_versions":
            return paginator(name)
        refusal = ClientError({"Error": {"Code": "NotImplemented"}}, "ListObjectVersions")
        return _Refusing(refusal)

    monkeypatch.setattr(client, "get_paginator", refusing)
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert orphan in await sweep.sweep(state.sessions, state.storage, before=later)
    assert "evidence pack versions not listed: NotImplemented" in caplog.messages
    with pytest.raises(StorageError):
        await state.storage.read(orphan)


class _Refusing:
    """A paginator whose first page is a refusal."""

    def __init__(self, refusal: Exception) -> None:
        self.refusal = refusal

    def paginate(self, **_: Any) -> Any:
        return self

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        raise self.refusal


async def test_versions_the_store_will_not_delete_get_no_marker_at_every_sweep(
    versioned_app: Starlette,
    smtp: SmtpServer,
    moto_url: str,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A version under a retention lock, or a key without s3:DeleteObjectVersion: the current
    object is deleted plainly once; later sweeps, which still find the orphan by its version,
    leave it as it is rather than stack a delete marker on it each time."""
    state = versioned_app.state.coverproof
    orphan = await _an_orphan(versioned_app, smtp, monkeypatch, "Locked Version Ltd")
    client = state.storage._client
    delete_object = client.delete_object

    async def refusing(**kwargs: Any) -> Any:
        if "VersionId" in kwargs:
            raise ClientError({"Error": {"Code": "AccessDenied"}}, "DeleteObject")
        return await delete_object(**kwargs)

    monkeypatch.setattr(client, "delete_object", refusing)
    later = datetime.now(UTC) + timedelta(seconds=2)
    for _ in range(3):
        assert orphan in await sweep.sweep(state.sessions, state.storage, before=later)
        versions, markers = await _versions(moto_url, versioned_bucket, orphan)
        assert (len(versions), len(markers)) == (1, 1)
    assert "evidence pack version delete refused: AccessDenied" in caplog.messages
    with pytest.raises(StorageError):
        await state.storage.read(orphan)  # hidden from the app all the same
