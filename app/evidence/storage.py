"""Where finished evidence-pack PDFs live: a local folder (the default) or S3-compatible
object storage (Cloudflare R2, AWS S3) through aioboto3.

Keys are firm-scoped and unguessable: ``[<prefix>/]<firm id>/<pack id>-<128 random bits>.pdf``.
A key is only ever read back from the pack's own row (under RLS), never from a request. An
upload either completes or leaves nothing behind: a failed ``put`` deletes whatever part of the
object may exist before it raises ``StorageError``.

The storage object also holds the render slots (a semaphore of ``pack_render_concurrency``)
and the packs admitted at once (twice that: those rendering and as many waiting; fewer if the
database pool is small, as each pack in progress holds two of its connections): it lives as
long as the app, which is what bounds concurrent renders across requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import secrets
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from app.config import ConfigError, Settings

log = logging.getLogger("coverproof.evidence")

CONTENT_TYPE = "application/pdf"
_SUFFIX = re.compile(r"^[0-9a-f-]{36}-[A-Za-z0-9_-]{22}\.pdf$")
_PARTIAL = re.compile(r"^\.[0-9a-f-]{36}-[A-Za-z0-9_-]{22}\.pdf\.[0-9a-f]{8}\.part$")


class StorageError(Exception):
    """Storing, reading or deleting an object failed; the message is safe to show the firm."""


def _random_name(pack_id: uuid.UUID) -> str:
    return f"{pack_id}-{secrets.token_urlsafe(16)}.pdf"


class Storage(ABC):
    """The interface both stores implement."""

    kind: str

    def __init__(self, render_concurrency: int, pool_size: int = 10) -> None:
        self.render_slots = asyncio.Semaphore(max(1, render_concurrency))
        # A pack's request holds its database connection while it waits for a slot: beyond
        # these, a request is refused at once rather than queued, so that packs never take the
        # pool's connections from every firm's other requests.
        # Each holds two connections (the request's, and its snapshot's while it is read):
        # two of the pool's always stay for everything else.
        self.admitted = asyncio.Semaphore(
            max(1, min(2 * max(1, render_concurrency), (pool_size - 2) // 2))
        )

    @abstractmethod
    async def open(self) -> None:
        """Acquire what the store needs for the app's lifetime."""

    @abstractmethod
    async def close(self) -> None:
        """Release it."""

    @abstractmethod
    def new_key(self, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
        """A fresh, unguessable key under the firm's own prefix."""

    @abstractmethod
    async def put(self, key: str, data: bytes, sha256: bytes) -> str | None:
        """Store ``data`` at ``key``, all or nothing; raise StorageError on failure. The
        version the store made of it, if it keeps versions."""

    @abstractmethod
    async def read(self, key: str, version: str | None = None) -> bytes:
        """The stored bytes (of ``version``, given one); raise StorageError if they cannot be
        read."""

    @abstractmethod
    async def delete(self, key: str, version: str | None = None) -> None:
        """Remove ``key`` if it exists, and ``version`` of it (as ``put`` named it) for good
        where the store keeps versions; raise StorageError on failure."""

    @abstractmethod
    def written_before(self, moment: datetime) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        """The keys of the objects last written before ``moment``, a firm at a time (for the
        sweep of objects no pack names); raise StorageError if they cannot be listed."""


def _is_firm_folder(folder: str) -> bool:
    try:
        return str(uuid.UUID(folder)) == folder
    except ValueError:
        return False


def _firm_of(folder: str, name: str) -> uuid.UUID | None:
    """The firm whose folder holds the object ``name``, if both are as ``new_key`` makes them;
    None for anything else, which is never a pack's."""
    try:
        firm, pack = uuid.UUID(folder), uuid.UUID(name[:36])
    except ValueError:
        return None
    ours = str(firm) == folder and str(pack) == name[:36] and _SUFFIX.match(name)
    return firm if ours else None


def pack_of(key: str) -> uuid.UUID:
    """The id of the pack whose PDF is stored at ``key`` (one ``new_key`` made)."""
    return uuid.UUID(key.rpartition("/")[2][:36])


class LocalStorage(Storage):
    """Files under ``<data_dir>/packs/<firm id>/``, mode 0600, written atomically."""

    kind = "local"

    def __init__(self, root: Path, render_concurrency: int, pool_size: int = 10) -> None:
        super().__init__(render_concurrency, pool_size)
        self.root = root.resolve()

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, mode=0o700, parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing is held open between requests."""

    def new_key(self, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
        return f"{firm_id}/{_random_name(pack_id)}"

    def path(self, key: str) -> Path:
        """The file for ``key``; refuses any key that is not exactly ``<uuid>/<name>.pdf``, so
        no key (however it was made) can reach outside the packs folder."""
        firm, _, name = key.partition("/")
        try:
            valid = str(uuid.UUID(firm)) == firm and bool(_SUFFIX.match(name))
        except ValueError:
            valid = False
        path = (self.root / firm / name).resolve()
        if not valid or path.parent.parent != self.root:
            raise StorageError("Not a key of this store.")
        return path

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        # O_EXCL + 0600: a fresh file only the server's user can read; renamed into place only
        # once complete, so a reader never sees half a PDF.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes, sha256: bytes) -> None:
        path = self.path(key)
        if hashlib.sha256(data).digest() != sha256:
            raise StorageError("The pack changed before it was stored.")
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as error:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise StorageError(f"The pack could not be written ({error.strerror}).") from error

    async def read(self, key: str, version: str | None = None) -> bytes:
        if version is not None:
            raise StorageError("A local file has no versions.")
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except OSError as error:
            raise StorageError("The pack's file cannot be read.") from error

    async def delete(
        self,
        key: str,
        version: str | None = None,  # noqa: ARG002 (the interface's; a file has no versions)
    ) -> None:
        try:
            await asyncio.to_thread(self.path(key).unlink, missing_ok=True)
        except OSError as error:
            raise StorageError("The pack's file cannot be removed.") from error

    async def written_before(self, moment: datetime) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        try:
            found = await asyncio.to_thread(self._written_before, moment.timestamp())
        except OSError as error:
            raise StorageError("The packs folder cannot be listed.") from error
        for firm, keys in found:
            yield firm, keys

    def _written_before(self, moment: float) -> list[tuple[uuid.UUID, list[str]]]:
        """Also removes the half-written files (``_write``'s) that a process which died while
        writing left behind: no key ever names one."""
        found: dict[uuid.UUID, list[str]] = {}
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir() or not _is_firm_folder(folder.name):
                continue  # nothing new_key makes
            for file in sorted(folder.iterdir()):
                try:
                    if file.is_symlink() or file.stat().st_mtime >= moment:
                        continue
                except FileNotFoundError:
                    continue  # deleted or renamed since it was listed
                if _PARTIAL.match(file.name):
                    file.unlink(missing_ok=True)
                elif (firm := _firm_of(folder.name, file.name)) is not None:
                    found.setdefault(firm, []).append(f"{folder.name}/{file.name}")
        return list(found.items())


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
        name = f"{firm_id}/{_random_name(pack_id)}"
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

    async def written_before(self, moment: datetime) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        # Listed in key order, so each firm's objects come together.
        start = f"{self.prefix}/" if self.prefix else ""
        firm: uuid.UUID | None = None
        keys: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            async for page in pages:
                for item in page.get("Contents", ()):
                    folder, _, name = item["Key"].removeprefix(start).partition("/")
                    owner = _firm_of(folder, name)
                    if owner is None or item["LastModified"] >= moment:
                        continue
                    if owner != firm:
                        if firm is not None and keys:
                            yield firm, keys
                        firm, keys = owner, []
                    keys.append(item["Key"])
        except (BotoCoreError, ClientError) as error:
            code = _client_error_code(error)
            raise StorageError(f"The object store cannot be listed ({code}).") from error
        if firm is not None and keys:
            yield firm, keys


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def open_storage(settings: Settings) -> Storage:
    """The configured store (not yet opened): ``COVERPROOF_STORAGE_URL=s3://bucket/prefix``, or
    the local folder ``<data_dir>/packs`` when it is unset."""
    if settings.storage_url is None:
        return LocalStorage(
            settings.data_dir / "packs", settings.pack_render_concurrency, settings.db_pool_size
        )
    parts = urlsplit(settings.storage_url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            ["COVERPROOF_STORAGE_URL must look like s3://bucket or s3://bucket/prefix."]
        )
    return S3Storage(settings, parts.netloc, parts.path.strip("/"))
