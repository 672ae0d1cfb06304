"""Firm API keys for partner systems (a firm's HR or CRM system).

A key reads ``cp_live_<public id>_<secret>``: 256 random bits of secret, shown once. Only the
SHA-256 of the whole key is stored, with a display prefix, its scopes, creator and times. A key
acts in its one firm's tenant context, limited by its scopes on every field.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import pagination
from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.db import calls
from app.db.models import ApiKey
from app.errors import NotFound, field_error
from app.visible import plain_name

PREFIX = "cp_live_"
KEY_SHAPE = re.compile(r"^cp_live_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$")


class Scope(StrEnum):
    DECLARATIONS_READ = "declarations:read"
    DECLARATIONS_WRITE = "declarations:write"
    COUNTERPARTIES_READ = "counterparties:read"
    COUNTERPARTIES_WRITE = "counterparties:write"
    AUDIT_READ = "audit:read"
    EVIDENCE_READ = "evidence:read"


@dataclass(frozen=True)
class ApiKeyIdentity:
    """A request authenticated by an API key: one firm, one key, its scopes."""

    key_id: uuid.UUID
    firm_id: uuid.UUID
    name: str
    scopes: frozenset[str]
    first_use: bool

    # The same names a session identity has, so the request context treats both alike. A key
    # may do what an admin may, but only through the fields its scopes open.
    role: Role = Role.ADMIN
    email_verified: bool = True
    session_id: uuid.UUID | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.key_id


def secret_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A new key and its display prefix."""
    public_id = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(12))
    return f"{PREFIX}{public_id}_{secrets.token_urlsafe(32)}", f"{PREFIX}{public_id}"


async def authenticate(session: AsyncSession, key: str) -> ApiKeyIdentity | None:
    """The live key for a presented value (not revoked, not expired), or None."""
    if not KEY_SHAPE.match(key):
        return None
    row = await calls.api_key_lookup(session, secret_hash(key))
    if row is None:
        return None
    return ApiKeyIdentity(row.key_id, row.firm_id, row.name, frozenset(row.scopes), row.first_use)


async def create_api_key(
    session: AsyncSession,
    actor: Actor,
    name: str,
    scopes: list[Scope],
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    """A new key (admins and owners); the secret is returned once and never stored."""
    actor.require(Role.ADMIN)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise field_error("name", "Use 1 to 100 characters.")
    try:
        # Listed to admins and printed as the actor of what the key did (auditEntries, packs).
        plain_name(name)
    except ValueError as refused:
        raise field_error("name", str(refused)) from None
    if not scopes:
        raise field_error("scopes", "Grant at least one scope.")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise field_error("expiresAt", "Choose a future time.")
    key, prefix = new_key()
    record = ApiKey(
        id=uuid.uuid4(),
        firm_id=actor.firm_id,
        name=name,
        secret_hash=secret_hash(key),
        display_prefix=prefix,
        scopes=sorted({scope.value for scope in scopes}),
        created_by=actor.id,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    columns = ApiKey.__table__.c
    await session.execute(
        insert(ApiKey).values({c.key: getattr(record, c.key, None) for c in columns})
    )
    details = {"name": record.name, "scopes": record.scopes, "prefix": prefix}
    await chain.record(session, actor, Action.API_KEY_CREATED, "api_key", record.id, details)
    return record, key


# A firm's keys, revoked ones included, are as many as its admins made: listed whole, ten
# thousand took seconds and megabytes on the event loop every firm shares.
MAX_PAGE = 100


def encode_cursor(key: ApiKey) -> str:
    """An opaque position in the list: the (created_at, id) it is ordered by."""
    return pagination.encode(key.created_at.isoformat(), key.id)


async def list_api_keys(
    session: AsyncSession, actor: Actor, first: int = 50, after: str | None = None
) -> tuple[list[ApiKey], bool]:
    """A page of the firm's keys, newest first, revoked ones included, and whether more
    follow (admins)."""
    actor.require(Role.ADMIN)
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} API keys at a time.")
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if after is not None:
        created, ident = pagination.decode_time(after)
        query = query.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(created, ident))
    rows = list((await session.execute(query.limit(first + 1))).scalars())
    return rows[:first], len(rows) > first


async def revoke_api_key(session: AsyncSession, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    """Kill a key at once (admins and owners)."""
    actor.require(Role.ADMIN)
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiKey)
        .execution_options(synchronize_session=False)
    )
    revoked = result.scalar_one_or_none()
    if revoked is None:
        raise NotFound("API key not found.")
    await chain.record(session, actor, Action.API_KEY_REVOKED, "api_key", key_id)
    return revoked


async def record_first_use(session: AsyncSession, actor: Actor) -> None:
    """Audit a key's first use (the lookup tells; later uses only update last_used_at)."""
    await chain.record(session, actor, Action.API_KEY_FIRST_USED, "api_key", actor.id)
