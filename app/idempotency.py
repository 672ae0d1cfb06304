"""Idempotent creates: a client may send an ``idempotencyKey`` with a mutation that creates
things; a retry with the same key (after a timeout, when it cannot know whether the first
attempt committed) returns the first result and writes nothing more.

The key is scoped to the firm and the actor. Checking and remembering run under the firm's
chain lock, which every write of the firm takes anyway, so two concurrent retries cannot both
create. A retry must send the same request: the key, sent with different input, is refused
rather than answered with a result that is not for that input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.auth.actor import Actor
from app.db import calls
from app.db.models import IdempotencyKey
from app.errors import RateLimited, field_error

Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Request = BaseModel | Mapping[str, Any]
_KEY: TypeAdapter[str | None] = TypeAdapter(Key | None)
_REQUEST = "request_sha256"


def checked_key(key: str | None) -> str | None:
    """A key taken straight from a GraphQL input, held to the same rules as the models' ``Key``
    (1-100 characters, surrounding space dropped)."""
    try:
        return _KEY.validate_python(key)
    except ValidationError as error:
        raise field_error("idempotencyKey", "Send 1 to 100 characters.") from error


def _fingerprint(request: Request) -> str:
    """The SHA-256 of the request's input as canonical JSON, its idempotency key left out."""
    if isinstance(request, BaseModel):
        request = request.model_dump(mode="json", exclude={"idempotency_key"})
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def replay(
    session: AsyncSession,
    actor: Actor,
    key: str | None,
    operation: str,
    request: Request,
    *,
    lock: bool = True,
) -> dict[str, Any] | None:
    """The first result remembered under ``key`` for this operation and this same request, or
    None (first attempt). ``lock=False`` for long operations (a PDF render) that must not hold
    the firm's lock: a concurrent duplicate then waits on the key's primary key in
    ``remember`` and fails there once the first commits, for its caller to replay."""
    if key is None:
        return None
    held = True
    if lock:
        await chain.lock_firm(session, actor.firm_id)
        held = await _try_hold(session, actor, key)
    row = await _kept(session, actor, key)
    if not held and row is None:
        raise _in_use()
    # Not held, but kept: a duplicate that ran before this one, next for the firm's lock, has
    # committed (its result is read) and is releasing its locks one at a time, the key's last.
    if row is None:
        return None
    if row.operation != operation:
        raise field_error("idempotencyKey", "This key was used for another kind of request.")
    # Keys kept before requests were fingerprinted carry none: those replay as they did.
    fingerprint = _fingerprint(request)
    if row.result.get(_REQUEST, fingerprint) != fingerprint:
        raise field_error("idempotencyKey", "This key was used for a different request.")
    return row.result


def for_this_request(result: dict[str, Any]) -> bool:
    """Whether a replayed result was kept for this very request (its fingerprint matched), not
    under a key kept before requests were fingerprinted, which replays whatever was asked."""
    return _REQUEST in result


async def first_result(
    session: AsyncSession, actor: Actor, key: str | None, operation: str, request: Request
) -> dict[str, Any] | None:
    """``replay`` for a caller that answers a mismatch with its own refusal: the first result
    kept under ``key`` if it was for this operation and this same request, else None. Takes
    no lock."""
    row = None if key is None else await _kept(session, actor, key)
    if row is None or row.operation != operation:
        return None
    same = row.result.get(_REQUEST) == _fingerprint(request)
    return row.result if same else None


async def kept_result(
    session: AsyncSession, actor: Actor, key: str, operation: str
) -> dict[str, Any] | None:
    """The first result kept under ``key`` for ``operation``, whatever request it answered (for
    a caller that only reports it), or None."""
    row = await _kept(session, actor, key)
    return row.result if row is not None and row.operation == operation else None


# How long to wait for a key in use.
IN_USE_RETRY_SECONDS = 10


def _in_use() -> RateLimited:
    message = "A request with this idempotency key is under way; ask again shortly."
    return RateLimited(message, retryAfter=IN_USE_RETRY_SECONDS)


async def hold(session: AsyncSession, actor: Actor, key: str) -> None:
    """Hold ``key``'s lock until the transaction ends, or refuse at once (RATE_LIMITED) while
    another request holds it. A pack being made holds it through its render, without the
    firm's lock; a request with its key (a duplicate, or another kind of request) waited on
    the pack's uncommitted key for the whole render, holding a connection of the pool, or the
    firm's lock and with it every write of the firm."""
    if not await _try_hold(session, actor, key):
        raise _in_use()


async def _try_hold(session: AsyncSession, actor: Actor, key: str) -> bool:
    """``hold``, answering whether the key's lock was taken, not refusing."""
    scoped = b"\0".join((actor.firm_id.bytes, str(actor.id).encode(), key.encode()))
    digest = hashlib.sha256(scoped).digest()
    # 64 bits of it, as the two-key form's two halves: 32 (one space, one key) let any firm's
    # key in use refuse another's that hashed alike, which enough requests in flight would meet.
    space, lock = (int.from_bytes(digest[i : i + 4], "big", signed=True) for i in (0, 4))
    return await calls.try_pair_lock(session, space, lock)


async def _kept(session: AsyncSession, actor: Actor, key: str) -> IdempotencyKey | None:
    query = select(IdempotencyKey).where(
        IdempotencyKey.firm_id == actor.firm_id,
        IdempotencyKey.actor_id == str(actor.id),
        IdempotencyKey.key == key,
    )
    found: IdempotencyKey | None = (await session.execute(query)).scalar_one_or_none()
    return found


async def remember(
    session: AsyncSession,
    actor: Actor,
    key: str | None,
    operation: str,
    request: Request,
    result: dict[str, Any],
) -> None:
    """Keep the result of a first attempt, with its request's fingerprint, in the same
    transaction as what it created."""
    if key is None:
        return
    result = {**result, _REQUEST: _fingerprint(request)}
    await session.execute(
        insert(IdempotencyKey).values(
            firm_id=actor.firm_id,
            actor_id=str(actor.id),
            key=key,
            operation=operation,
            result=result,
            created_at=datetime.now(UTC),
        )
    )
