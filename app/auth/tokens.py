"""Single-use, expiring tokens for emailed links (verification, magic link, reset, invitation).

A token is 256 random bits, signed and time-stamped with itsdangerous under a salt per purpose,
so forged, stale and wrong-purpose tokens are refused before the database is asked. The database
stores only the SHA-256 of the random part, its expiry and ``used_at``; redemption is one atomic
conditional UPDATE (``auth_redeem_token``), so a token works once even under concurrent use.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.actor import Role
from app.db import calls
from app.db.models import AuthToken, User
from app.errors import TokenError, TokenExpired, TokenInvalid, TokenUsed, TokenWrongPurpose

MAX_TOKEN_LENGTH = 300


class Purpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    MAGIC_LINK = "magic_link"
    PASSWORD_RESET = "password_reset"
    INVITATION = "invitation"


def _serializer(secret_key: str, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=f"coverproof.token.{purpose.value}")


def _hash(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


@dataclass(frozen=True)
class Redemption:
    user_id: uuid.UUID | None
    firm_id: uuid.UUID | None
    email: str | None
    role: Role | None


async def issue(
    session: AsyncSession,
    secret_key: str,
    purpose: Purpose,
    ttl: timedelta,
    *,
    user_id: uuid.UUID | None = None,
    firm_id: uuid.UUID | None = None,
    email: str | None = None,
    role: Role | None = None,
    created_by: uuid.UUID | None = None,
    token_id: uuid.UUID | None = None,
) -> str:
    """Store a new token's hash (in the caller's tenant-bound transaction, with ``token_id``
    as its id if given); return the token."""
    raw = secrets.token_urlsafe(32)
    await session.execute(
        insert(AuthToken).values(
            id=token_id or uuid.uuid4(),
            purpose=purpose.value,
            token_hash=_hash(raw),
            user_id=user_id,
            firm_id=firm_id,
            email=email,
            role=role.value if role else None,
            created_by=created_by,
            created_at=datetime.now(UTC),
            expires_at=datetime.now(UTC) + ttl,
        )
    )
    return _serializer(secret_key, purpose).dumps(raw)


def check(secret_key: str, purpose: Purpose, token: str, ttl: timedelta) -> bytes:
    """Verify signature, purpose and age without the database; return the stored hash."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid()
    try:
        raw = _serializer(secret_key, purpose).loads(token, max_age=int(ttl.total_seconds()))
    except SignatureExpired as error:
        raise TokenExpired() from error
    except BadSignature as error:
        for other in Purpose:
            if other is not purpose and _signed_for(secret_key, other, token):
                raise TokenWrongPurpose() from error
        raise TokenInvalid() from error
    if not isinstance(raw, str):
        raise TokenInvalid()
    return _hash(raw)


def rate_key(secret_key: str, purpose: Purpose, token: str) -> str:
    """What a link's uses are counted under: the hash of its random part when it is signed for
    ``purpose`` (expired or not), else of its text. The signature's base64 reads many spellings
    alike (padded with "=", with other characters dropped): keyed on the text, each spelling of
    one link had a limit of its own."""
    raw: object = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        with contextlib.suppress(BadSignature):
            raw = _serializer(secret_key, purpose).loads(token)
    signed = isinstance(raw, str)
    return hashlib.sha256((f"raw {raw}" if signed else f"text {token}").encode()).hexdigest()


def _signed_for(secret_key: str, purpose: Purpose, token: str) -> bool:
    try:
        _serializer(secret_key, purpose).loads(token)
    except BadSignature:
        return False
    return True


async def invitation_firm(
    session: AsyncSession, secret_key: str, token: str, ttl: timedelta
) -> uuid.UUID | None:
    """The firm a pending invitation's link is to, or None (its redemption says why not)."""
    try:
        token_hash = check(secret_key, Purpose.INVITATION, token, ttl)
    except TokenError:
        return None
    return await calls.invitation_firm(session, token_hash)


async def redeem(session: AsyncSession, purpose: Purpose, token_hash: bytes) -> Redemption:
    """Consume the token atomically. Raises TokenUsed/TokenExpired/TokenInvalid; the refusal
    carries the firm and user (when known) so the attempt can be audited."""
    row = await calls.redeem_token(session, purpose.value, token_hash)
    result = Redemption(
        row.user_id,
        row.firm_id,
        row.email,
        Role(row.role) if row.role else None,
    )
    if row.status == "ok":
        return result
    refusal: type[TokenError] = {"used": TokenUsed, "expired": TokenExpired}.get(
        row.status, TokenInvalid
    )
    error = refusal()
    raise RefusedToken(error, result)


class RefusedToken(Exception):
    """A token the database refused, with whatever it knew about its firm and user."""

    def __init__(self, error: TokenError, known: Redemption) -> None:
        super().__init__(error.code)
        self.error = error
        self.known = known


async def spend_sign_in_links(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Spend the user's unused links that sign in: magic, reset and verification links (a
    verification link signs its account in too) (RLS: only the bound user's own), so a link
    someone else took from the mailbox stops working once the user resets the password or
    signs out everywhere; how many there were. Redeemed later, each is TOKEN_USED. And note
    when, on the user's row (held until the commit): an invitation, which signs in as they do,
    is the inviting firm's row, so one sent before then is refused to the user when followed
    (``invited_before_spent``). The links first, then the row, as a sign-in by link takes them."""
    result = await session.execute(
        update(AuthToken)
        .where(
            AuthToken.user_id == user_id,
            AuthToken.used_at.is_(None),
            AuthToken.purpose.in_(
                [Purpose.MAGIC_LINK.value, Purpose.PASSWORD_RESET.value, Purpose.VERIFY_EMAIL.value]
            ),
        )
        .values(used_at=datetime.now(UTC))
    )
    await session.execute(update(User).where(User.id == user_id).values(links_spent_at=func.now()))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def spend_unused(session: AsyncSession, user_id: uuid.UUID, purpose: Purpose) -> None:
    """Spend the user's unused links of ``purpose`` (RLS: only the bound user's own), but one
    another request holds: it is being redeemed, and waiting for it deadlocked with that
    request spending this one's (two confirmation links followed at once)."""
    unused = (
        select(AuthToken.id)
        .where(
            AuthToken.user_id == user_id,
            AuthToken.used_at.is_(None),
            AuthToken.purpose == purpose.value,
        )
        .with_for_update(skip_locked=True, key_share=True)
    )
    await session.execute(
        update(AuthToken).where(AuthToken.id.in_(unused)).values(used_at=datetime.now(UTC))
    )


async def invited_before_spent(
    session: AsyncSession, secret_key: str, token: str, ttl: timedelta, user_id: uuid.UUID
) -> bool:
    """Whether an invitation (``token``, already checked) to the existing user ``user_id`` was
    sent before they last spent their links. Reads the user's row under a lock held until the
    commit: a reset or "sign out everywhere" under way waits for this one, then ends its
    session; one that committed first is seen."""
    spent = await session.scalar(
        select(User.links_spent_at).where(User.id == user_id).with_for_update(key_share=True)
    )
    if spent is None:
        return False
    token_hash = check(secret_key, Purpose.INVITATION, token, ttl)
    sent = await session.scalar(
        select(AuthToken.created_at).where(AuthToken.token_hash == token_hash)
    )
    return sent is None or sent <= spent
