"""Evidence-pack PDFs in a local folder (the default store): one file per key, mode 0600,
written atomically; see app/evidence/storage.py for what every store promises."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from app.evidence.storage import (
    SUFFIX,
    Storage,
    StorageError,
    firm_of,
    is_firm_folder,
    random_name,
)

# How long a half-written file goes untouched before it is taken for a dead writer's.
PARTIAL_SECONDS = 3600
_PARTIAL = re.compile(r"^\.[0-9a-f-]{36}-[A-Za-z0-9_-]{22}\.pdf\.[0-9a-f]{8}\.part$")


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
        return f"{firm_id}/{random_name(pack_id)}"

    def path(self, key: str) -> Path:
        """The file for ``key``; refuses any key that is not exactly ``<uuid>/<name>.pdf``, so
        no key (however it was made) can reach outside the packs folder."""
        firm, _, name = key.partition("/")
        try:
            valid = str(uuid.UUID(firm)) == firm and bool(SUFFIX.match(name))
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

    async def written_before(
        self, moment: datetime, *, dry_run: bool = False
    ) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        try:
            found = await asyncio.to_thread(self._written_before, moment.timestamp(), dry_run)
        except OSError as error:
            raise StorageError("The packs folder cannot be listed.") from error
        for firm, keys in found:
            yield firm, keys

    def _written_before(self, moment: float, dry_run: bool) -> list[tuple[uuid.UUID, list[str]]]:
        """Also removes the half-written files (``_write``'s) that a process which died while
        writing left behind (no key ever names one), an hour untouched, but in a dry run, which
        removes nothing."""
        found: dict[uuid.UUID, list[str]] = {}
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir() or not is_firm_folder(folder.name):
                continue  # nothing new_key makes
            for file in sorted(folder.iterdir()):
                try:
                    if file.is_symlink() or file.stat().st_mtime >= moment:
                        continue
                except FileNotFoundError:
                    continue  # deleted or renamed since it was listed
                if _PARTIAL.match(file.name):
                    # A writer writes on: one this old has died, whatever the sweep's cut-off.
                    if not dry_run and file.stat().st_mtime < time.time() - PARTIAL_SECONDS:
                        file.unlink(missing_ok=True)
                elif (firm := firm_of(folder.name, file.name)) is not None:
                    found.setdefault(firm, []).append(f"{folder.name}/{file.name}")
        return list(found.items())
