"""Evidence-pack PDFs in an S3-compatible bucket (Cloudflare R2, AWS S3) through aioboto3; see
app/evidence/storage.py for what every store promises."""

from __future__ import annotations

import base64
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from app.config import Settings
from app.evidence.storage import CONTENT_TYPE, Storage, StorageError, firm_of, random_name

log = logging.getLogger("coverproof.evidence")


def _client_error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "error"))
    return type(error).__name__


class S3Storage(Storage):
    """An S3-compatible bucket. Objects are written with server-side encryption requested
    (``AES256``), their content type, their SHA-256 as metadata and as an upload checksum the
    store verifies."""

    kind = "s3"

    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        super().__init__(settings.pack_render_concurrency, settings.db_pool_size)
        self.bucket, self.prefix = bucket, prefix
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        s = self.settings
        # Path-style addressing for a custom endpoint (R2, MinIO, a loopback test server);
        # AWS's own endpoint keeps its virtual-hosted default.
        style = "path" if s.s3_endpoint_url else "virtual"
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": style},
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=s.s3_endpoint_url,
                region_name=s.s3_region,
                aws_access_key_id=_secret(s.s3_access_key_id),
                aws_secret_access_key=_secret(s.s3_secret_access_key),
                config=config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def new_key(self, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
        name = f"{firm_id}/{random_name(pack_id)}"
        return f"{self.prefix}/{name}" if self.prefix else name

    async def put(self, key: str, data: bytes, sha256: bytes) -> str | None:
        try:
            stored = await self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=CONTENT_TYPE,
                ServerSideEncryption="AES256",
                Metadata={"sha256": sha256.hex()},
                ChecksumSHA256=base64.b64encode(sha256).decode(),
            )
        except (BotoCoreError, ClientError) as error:
            # A timed-out or interrupted upload may still have landed: remove it, so a failed
            # pack never leaves an object behind.
            with contextlib.suppress(StorageError):
                await self.delete(key)
            code = _client_error_code(error)
            log.warning("evidence pack upload failed: %s", code)
            raise StorageError(f"The object store refused the upload ({code}).") from error
        # Only a bucket with versioning on names one ("null" when it is suspended).
        version = stored.get("VersionId")
        return version if version and version != "null" else None

    async def read(self, key: str, version: str | None = None) -> bytes:
        if version is not None:
            try:
                return await self._get(key, {"VersionId": version})
            except ClientError as error:
                # A store that names versions it cannot read back (R2 is reported to), a key
                # not allowed s3:GetObjectVersion, a version a lifecycle rule expired, or a
                # bucket copied elsewhere: the current object, which the caller checks against
                # the recorded SHA-256 all the same.
                log.warning("pack object version unreadable (%s)", _client_error_code(error))
            except BotoCoreError as error:
                raise StorageError(f"The object cannot be read ({type(error).__name__}).") from (
                    error
                )
        try:
            return await self._get(key, {})
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"The object cannot be read ({_client_error_code(error)}).") from (
                error
            )

    async def _get(self, key: str, pinned: dict[str, str]) -> bytes:
        response = await self._client.get_object(Bucket=self.bucket, Key=key, **pinned)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, key: str, version: str | None = None) -> None:
        # In a versioned bucket a plain delete only hides the object behind a delete marker,
        # its bytes kept as a noncurrent version; deleting the version removes them.
        if version is not None and await self._delete_version(key, version):
            return
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            code = _client_error_code(error)
            if code not in {"NoSuchKey", "404"}:
                log.warning("evidence pack delete failed: %s", code)
                raise StorageError(f"The object cannot be removed ({code}).") from error

    async def _delete_version(self, key: str, version: str) -> bool:
        """Delete ``version`` of ``key``; whether no current object is left at ``key``. A store
        may refuse (a key without s3:DeleteObjectVersion), or acknowledge a version it never
        kept (R2 is reported to name versions on upload): either way the caller deletes the
        key plainly."""
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
        except (BotoCoreError, ClientError) as error:
            log.warning("evidence pack version delete refused: %s", _client_error_code(error))
            return False
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            code = _client_error_code(error)
            if code in {"NoSuchKey", "404"}:
                return True
            log.warning("evidence pack object unchecked after its version's delete: %s", code)
            return False
        log.warning("evidence pack object outlived the delete of its version")
        return False

    async def purge(self, key: str) -> None:
        # A plain delete keeps the bytes as a noncurrent version behind a delete marker: each
        # version, and each marker, is deleted instead. Where the store lists no versions (it
        # keeps none, or may not say), or refuses to delete one (a retention lock, no
        # s3:DeleteObjectVersion), a current object is deleted plainly; one already hidden is
        # left as it is, not given another marker at every sweep.
        try:
            versions = [v async for v in self._versions(key)]
        except (BotoCoreError, ClientError) as error:
            log.warning("evidence pack versions not listed: %s", _client_error_code(error))
            versions = []
        for version in versions:
            try:
                await self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            except (BotoCoreError, ClientError) as error:
                log.warning("evidence pack version delete refused: %s", _client_error_code(error))
                break
        else:
            if versions:
                return
        if await self._current(key):
            await self.delete(key)

    async def _current(self, key: str) -> bool:
        """Whether ``key`` names a current object (or whether that cannot be told)."""
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            return _client_error_code(error) not in {"NoSuchKey", "404"}
        return True

    async def _versions(self, key: str) -> AsyncIterator[str]:
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key
        )
        async for page in pages:
            for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                if item["Key"] == key:
                    yield item["VersionId"]

    async def written_before(
        self,
        moment: datetime,
        *,
        dry_run: bool = False,  # noqa: ARG002 (a put is whole or absent: no leftovers to remove)
    ) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        # Listed in key order, so each firm's objects come together; by version where the store
        # lists them, so that a key only older versions are left of (deleted plainly) is found.
        start = f"{self.prefix}/" if self.prefix else ""
        firm: uuid.UUID | None = None
        newest: dict[str, datetime] = {}  # the firm's keys, each by its newest version
        try:
            async for key, modified in self._listed(start):
                folder, _, name = key.removeprefix(start).partition("/")
                owner = firm_of(folder, name)
                if owner is None:
                    continue
                if owner != firm:
                    if firm is not None and (old := _older(newest, moment)):
                        yield firm, old
                    firm, newest = owner, {}
                newest[key] = max(modified, newest.get(key, modified))
        except (BotoCoreError, ClientError) as error:
            code = _client_error_code(error)
            raise StorageError(f"The object store cannot be listed ({code}).") from error
        if firm is not None and (old := _older(newest, moment)):
            yield firm, old

    async def _listed(self, start: str) -> AsyncIterator[tuple[str, datetime]]:
        """Every object's key under ``start`` and when it was written, in key order: each
        version and delete marker where the store lists them, else each current object."""
        first = True
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=start
            )
            async for page in pages:
                first = False
                items = (*page.get("Versions", ()), *page.get("DeleteMarkers", ()))
                for item in sorted(items, key=lambda i: str(i["Key"])):
                    yield item["Key"], item["LastModified"]
            return
        except (BotoCoreError, ClientError) as error:
            if not first:
                raise
            log.warning("evidence pack versions not listed: %s", _client_error_code(error))
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        async for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"], item["LastModified"]


def _older(newest: dict[str, datetime], moment: datetime) -> list[str]:
    return [key for key, modified in newest.items() if modified < moment]


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
