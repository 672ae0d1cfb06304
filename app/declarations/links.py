"""Recipients' single-use links: ``<links url>/respond#token=<token>``.

The token is 256 random bits signed with itsdangerous (its own salt), so forged tokens are
refused before the database; the declaration stores only the SHA-256 of the random part and
the link's expiry. Reissuing replaces the hash, so the old link dies at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, timedelta
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer

from app import calendar
from app.config import Settings
from app.errors import TokenInvalid

_SALT = "coverproof.token.declaration"
MAX_TOKEN_LENGTH = 200


def new_token(secret_key: str) -> tuple[str, bytes]:
    """A fresh link token and the hash to store."""
    raw = secrets.token_urlsafe(32)
    return URLSafeSerializer(secret_key, salt=_SALT).dumps(raw), _hash(raw)


def token_hash(secret_key: str, token: str) -> bytes:
    """The stored hash for a presented token; TokenInvalid when forged or malformed."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid()
    try:
        raw = URLSafeSerializer(secret_key, salt=_SALT).loads(token)
    except BadSignature as error:
        raise TokenInvalid() from error
    if not isinstance(raw, str):
        raise TokenInvalid()
    return _hash(raw)


def _hash(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def expiry(settings: Settings, due: date | None, link_days: int | None, now: datetime) -> datetime:
    """The link's expiry: ``link_days`` (default setting) from now, never past the end (in
    London) of the due day + grace."""
    expires = now + timedelta(days=link_days or settings.declaration_token_days)
    if due is not None:
        latest = calendar.end_of(due + timedelta(days=settings.declaration_grace_days))
        expires = min(expires, latest)
    return expires


def url(settings: Settings, token: str) -> str:
    """The token travels in the fragment, as the auth links' do: browsers send it to no server
    (a proxy's or CDN's request log) and in no Referer. Links already sent, with the token in
    the path, still open the page."""
    return f"{settings.links_url}/respond#token={quote(token, safe='')}"
