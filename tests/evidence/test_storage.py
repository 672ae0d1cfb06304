"""The local store on its own: private files, strictly inside its folder, all or nothing; and
the storage setting is checked before the app starts."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from app.config import ConfigError, Settings
from app.evidence.local_storage import LocalStorage
from app.evidence.s3_storage import S3Storage
from app.evidence.storage import StorageError
from app.evidence.stores import open_storage


async def test_local_files_are_private_unguessable_and_inside_the_folder(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "packs", render_concurrency=1)
    await store.open()
    firm, pack = uuid.uuid4(), uuid.uuid4()
    key = store.new_key(firm, pack)
    assert key.startswith(f"{firm}/{pack}-")
    assert key.endswith(".pdf")
    assert store.new_key(firm, pack) != key
    data = b"%PDF-1.7 a pack"
    await store.put(key, data, hashlib.sha256(data).digest())
    path = store.path(key)
    assert path.parent == (tmp_path / "packs" / str(firm)).resolve()
    assert path.stat().st_mode & 0o777 == 0o600
    assert await store.read(key) == data

    # Bytes that do not match the hash they came with are not stored at all.
    other = store.new_key(firm, pack)
    with pytest.raises(StorageError):
        await store.put(other, data, hashlib.sha256(b"something else").digest())
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    name = f"{pack}-{'a' * 22}.pdf"
    for bad in (
        "../escape.pdf",
        f"{firm}/../../{name}",
        f"../{firm}/{name}",
        f"{firm}/sub/{name}",
        f"{firm.hex}/{name}",
        f"{firm}/{pack}.pdf",
        f"/etc/{name}",
        f"{firm}/{name}/..",
    ):
        with pytest.raises(StorageError):
            store.path(bad)

    await store.delete(key)
    assert not path.exists()
    await store.delete(key)  # deleting what is gone is not an error


def test_the_storage_url_is_checked(tmp_path: Path) -> None:
    def settings(url: str | None) -> Settings:
        return Settings(_env_file=None, data_dir=tmp_path, storage_url=url)  # type: ignore[call-arg]

    assert isinstance(open_storage(settings(None)), LocalStorage)
    s3 = open_storage(settings("s3://bucket/some/prefix/"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    firm, pack = uuid.uuid4(), uuid.uuid4()
    assert s3.new_key(firm, pack).startswith(f"some/prefix/{firm}/{pack}-")
    for bad in ("https://bucket/prefix", "s3:///prefix", "s3://bucket/prefix?x=1", "bucket"):
        with pytest.raises(ConfigError):
            open_storage(settings(bad))


def test_packs_admitted_at_once_leave_two_of_the_pools_connections(tmp_path: Path) -> None:
    """Each pack in progress holds two connections (its request's and its snapshot's)."""
    admitted = {
        (slots, pool): LocalStorage(tmp_path, slots, pool).admitted._value
        for slots, pool in ((2, 10), (5, 10), (1, 10), (2, 4), (2, 2))
    }
    assert admitted == {(2, 10): 4, (5, 10): 4, (1, 10): 2, (2, 4): 1, (2, 2): 1}
