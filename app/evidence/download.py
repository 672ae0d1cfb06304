"""Signed download links for packs in the local store.

A link is ``<public url>/evidence/download/<token>``, where the token is an itsdangerous
``URLSafeTimedSerializer`` signature (own salt, so no other signed value of the app can be
replayed here) over the firm id and pack id, valid for five minutes. The link alone is not
enough: the download route also requires a session of the same firm, and re-reads the pack
under that firm's RLS, so a link leaked to anyone else is useless to them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "coverproof.evidence-pack.download"
MAX_AGE_SECONDS = 300
PATH = "/evidence/download/"
MAX_TOKEN_LENGTH = 300


@dataclass(frozen=True)
class DownloadClaim:
    firm_id: uuid.UUID
    pack_id: uuid.UUID


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def sign(secret_key: str, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
    """A token for one pack of one firm; it carries its own signing time."""
    return _serializer(secret_key).dumps([str(firm_id), str(pack_id)])


def link(public_url: str, secret_key: str, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
    return f"{public_url.rstrip('/')}{PATH}{sign(secret_key, firm_id, pack_id)}"


def read(secret_key: str, token: str, max_age: int = MAX_AGE_SECONDS) -> DownloadClaim | None:
    """The claim of a genuine token younger than ``max_age``; None for anything else (altered,
    expired, from another salt or key, malformed), so callers answer every refusal the same."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        firm, pack = _serializer(secret_key).loads(token, max_age=max_age)
        return DownloadClaim(uuid.UUID(str(firm)), uuid.UUID(str(pack)))
    except (BadData, ValueError, TypeError):
        return None
