"""The configured evidence-pack store."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.config import ConfigError, Settings
from app.evidence.local_storage import LocalStorage
from app.evidence.s3_storage import S3Storage
from app.evidence.storage import Storage


def open_storage(settings: Settings) -> Storage:
    """The configured store (not yet opened): ``COVERPROOF_STORAGE_URL=s3://bucket/prefix``, or
    the local folder ``<data_dir>/packs`` when it is unset."""
    if settings.storage_url is None:
        return LocalStorage(
            settings.data_dir / "packs", settings.pack_render_concurrency, settings.db_pool_size
        )
    try:
        parts = urlsplit(settings.storage_url)
    except ValueError:  # "Invalid IPv6 URL" (s3://[packs): a traceback, and exit 1, before
        parts = urlsplit("")
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            ["COVERPROOF_STORAGE_URL must look like s3://bucket or s3://bucket/prefix."]
        )
    return S3Storage(settings, parts.netloc, parts.path.strip("/"))
