"""The raw SQL the app sends outside the ORM: database functions and locks, in one place."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncGenerator, Collection, Mapping
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import JSON, Row, Table, bindparam, insert, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_SESSION_LOOKUP = text(
    "select session_id, user_id, firm_id, role, email_verified "
    "from auth_session_lookup(:token_hash, :idle_seconds)"
)
_BIND_SESSION = (
    "select session_id, user_id, firm_id, role, email_verified from auth_bind_session($1, $2)"
)
# The sealed function (0009), for what no member does (the checkpointer, the CLI): a function the
# owner may replace could blind them. And for a member, the same through 0035's, with their role.
_LOCKED_HEAD = text("select seq, hash from audit_locked_head(:firm_id, :key)")
_LOCKED_HEAD_PLAIN = "select seq, hash from audit_locked_head($1, $2)"
_MEMBER_LOCKED_HEAD = text(
    "select seq, hash, role from member_locked_head(:firm_id, :key, :member)"
)
_MEMBER_LOCKED_HEAD_PLAIN = "select seq, hash, role from member_locked_head($1, $2, $3)"
_BIND_API_KEY = "select key_id, firm_id, scopes from api_key_bind($1)"
_ENTRIES = (
    "select seq, "
    # As canonical.timestamp writes it (a test holds the two to the same text); null, so never
    # equal, for a moment it cannot write: a year before 1 or after 9999, or infinity.
    "case when occurred_at >= '0001-01-01T00:00:00Z' and occurred_at < '10000-01-01T00:00:00Z' "
    "then to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
    "end as occurred_at, "
    "actor_type, actor_id, action, target_type, target_id, details::text as details, ip, "
    "prev_hash, hash, canonical from audit_log "
)
BATCH = 500
_FIRM_ENTRIES = _ENTRIES + "where firm_id = $1 and seq >= $2 order by seq limit $3"
_PLATFORM_ENTRIES = _ENTRIES + "where firm_id is null and seq >= $1 order by seq limit $2"
_LEAST_SEQ = -(2**63)  # bigint's least: a chain from its start holds every row, whatever its seq
_MOST_SEQ = 2**63 - 1  # and its most: no row can follow one there
_XACT_LOCK = text("select pg_advisory_xact_lock(:key)")
# The two-key form: a lock space apart from the one-key form's (the firms' chain locks).
_PAIR_LOCK = text("select pg_advisory_xact_lock(:space, :key)")
_TRY_PAIR_LOCK = text("select pg_try_advisory_xact_lock(:space, :key)")
_USER_BY_EMAIL = text(
    "select user_id, password_hash, email_verified, firm_id, role from auth_user_by_email(:email)"
)
_REDEEM = text(
    "select status, user_id, firm_id, email, role from auth_redeem_token(:purpose, :token_hash)"
)
_MY_FIRMS = text("select firm_id, firm_name, role from auth_my_firms()")
# Failed password sign-ins are counted by address, registered or not (so the throttle cannot
# tell which addresses are).
_THROTTLED_UNTIL = text("select auth_sign_in_throttled_until(:address)")
_NOTE_FAILURE = text("select auth_note_failed_sign_in_by_address(:address, :threshold)")
_CLEAR_FAILURES = text("select auth_clear_sign_in_failures(:address)")
_END_MEMBER_SESSIONS = text("select auth_end_member_sessions(:user_id)")
_HOLD_MEMBER_SESSIONS = text("select auth_hold_member_sessions(:user_id)")
_END_MY_SESSIONS = text("select firm_id from auth_end_my_sessions(:user_id)")
_START_SESSION = text(
    "select auth_start_session(:id, :token_hash, :user_id, :firm_id, :expires_at, :ip, :user_agent)"
)
_DECLARATION_TOKEN = text(
    "select declaration_id, firm_id from declaration_token_lookup(:token_hash)"
)
_INVITATION_FIRM = text("select auth_invitation_firm(:token_hash)")
_RETIRED_LINK = text(
    "select declaration_id, firm_id, reason from declaration_retired_link(:token_hash)"
)
_CHAIN_HEADS = text(
    "select firm_id, head_seq, checkpoint_seq from audit_chain_heads(cast(:revoked as text[]))"
)
_API_KEY = text("select key_id, firm_id, name, scopes, first_use from api_key_lookup(:h)")
_PLATFORM_HEAD = text("select seq, hash from audit_platform_head()")
_PLATFORM_APPEND = text(
    "select audit_platform_append(:id, :seq, :occurred_at, :actor_type, :actor_id, :action, "
    ":target_type, :target_id, cast(:details as jsonb), :ip, :prev_hash, :hash, :canonical)"
)


async def session_lookup(
    session: AsyncSession, token_hash: bytes, idle_seconds: int
) -> Row[Any] | None:
    """Call the SECURITY DEFINER lookup that resolves a cookie hash before the tenant is known."""
    result = await session.execute(
        _SESSION_LOOKUP, {"token_hash": token_hash, "idle_seconds": idle_seconds}
    )
    return result.one_or_none()


async def bind_session(
    conn: asyncpg.Connection, token_hash: bytes, idle_seconds: int
) -> asyncpg.Record | None:
    """Resolve a cookie hash and bind its firm and user to the open transaction (one round
    trip); None, and nothing bound, for a session that is not live."""
    return await conn.fetchrow(_BIND_SESSION, token_hash, idle_seconds)


async def bind_api_key(conn: asyncpg.Connection, secret_hash: bytes) -> asyncpg.Record | None:
    """Resolve a live API key that has been used before and bind its firm (and the key, as the
    actor) to the open transaction; None, and nothing bound, otherwise (a first use included:
    the normal path audits it)."""
    return await conn.fetchrow(_BIND_API_KEY, secret_hash)


async def chain_entries(
    conn: asyncpg.Connection, firm_id: object | None, after: int | None = None
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """A firm's chain (or, for None, the platform's) in order, in batches. Each row holds seq,
    occurred_at, actor_type, actor_id, action, target_type, target_id, details, ip, prev_hash, hash
    and canonical, in that order (verification unpacks them by position); ``details`` as its JSON
    text and ``occurred_at`` as its canonical text, for an exact comparison (PostgreSQL formats a
    timestamp for less than Python). Not firm_id: every row's is the one asked for. From seq
    ``after`` + 1; for None, every row, even one below seq 1 that the constraint on seq should keep
    out (the product would show it, so verification must meet it).

    Each batch is a page read by the chain's index (``audit_log_chain_key``) from the seq the
    one before ended at, asked for before that one is handed over, so PostgreSQL reads it while
    the caller works. A cursor over the whole chain was planned as a scan of every firm's
    entries and a sort of the firm's, spilled to disk, before its first row came: the caller
    waited for all of it, on a table that grows with every firm."""
    query, firm = (_PLATFORM_ENTRIES, ()) if firm_id is None else (_FIRM_ENTRIES, (firm_id,))
    start = _LEAST_SEQ if after is None else after + 1
    async with contextlib.aclosing(pages(conn, query, firm, start)) as found:
        async for batch in found:
            yield batch


async def pages(
    conn: asyncpg.Connection, query: str, leading: tuple[Any, ...], start: int
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """Every row of ``query`` in pages of BATCH: its parameters are ``leading``, then the least
    seq (``start``, then one past the page before's last: each row's first column), then the
    page's size; it orders by seq. Each page is asked for before the one before it is handed
    over. Until the generator is closed, the connection is busy (one request at a time)."""
    pending: asyncio.Future[list[asyncpg.Record]] | None
    pending = asyncio.ensure_future(conn.fetch(query, *leading, start, BATCH))
    try:
        while pending is not None:
            batch = await pending
            pending = None
            if not batch:
                return
            last = batch[-1][0]
            if len(batch) == BATCH and last < _MOST_SEQ:
                pending = asyncio.ensure_future(conn.fetch(query, *leading, last + 1, BATCH))
                await asyncio.sleep(0)  # the request goes out before the caller's work starts
            yield batch
    finally:
        # Left early: the request in flight ends before the connection can take another.
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending


LockedHead = tuple[int | None, bytes | None, str | None]


async def locked_chain_head(
    session: AsyncSession, firm_id: object, key: int, member: object | None
) -> LockedHead:
    """Take the firm's chain lock, then read its head (seq and hash; None for an empty chain)
    and, for a ``member`` (a user), the role they hold in the firm now (None if none), in one
    round trip."""
    if member is None:
        found = (await session.execute(_LOCKED_HEAD, {"firm_id": firm_id, "key": key})).first()
        return (None, None, None) if found is None else (found[0], found[1], None)
    values = {"firm_id": firm_id, "key": key, "member": member}
    row = (await session.execute(_MEMBER_LOCKED_HEAD, values)).one()
    return row[0], row[1], row[2]


_API_KEY_LIVE_PLAIN = (
    "select exists (select 1 from api_keys where id = $1 and revoked_at is null "
    "and (expires_at is null or expires_at > now()))"
)
_API_KEY_LIVE = text(_API_KEY_LIVE_PLAIN.replace("$1", ":key"))


async def api_key_live(session: AsyncSession, key_id: object) -> bool:
    """Whether the bound firm's key is neither revoked nor expired, as it stands now."""
    return bool(await session.scalar(_API_KEY_LIVE, {"key": key_id}))


async def lane_api_key_live(conn: asyncpg.Connection, key_id: object) -> bool:
    """``api_key_live`` on a plain asyncpg connection (the write lane's)."""
    return bool(await conn.fetchval(_API_KEY_LIVE_PLAIN, key_id))


async def lane_locked_chain_head(
    conn: asyncpg.Connection, firm_id: object, key: int, member: object | None
) -> LockedHead:
    """``locked_chain_head`` on a plain asyncpg connection (the write lane's)."""
    if member is None:
        found = await conn.fetchrow(_LOCKED_HEAD_PLAIN, firm_id, key)
        return (None, None, None) if found is None else (found[0], found[1], None)
    row = await conn.fetchrow(_MEMBER_LOCKED_HEAD_PLAIN, firm_id, key, member)
    return row[0], row[1], row[2]


@functools.cache
def _insert(table: Table, columns: tuple[str, ...]) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """The INSERT of these columns, compiled for asyncpg once; its parameters' order; and which
    columns are JSON (a plain connection takes their text)."""
    statement = insert(table).values({name: bindparam(name) for name in columns})
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    json = frozenset(name for name in columns if isinstance(table.c[name].type, JSON))
    return compiled.string, tuple(compiled.positiontup or ()), json


async def insert_row(conn: asyncpg.Connection, table: Table, row: Mapping[str, Any]) -> None:
    """Insert one row on a plain asyncpg connection, with the statement SQLAlchemy compiles from
    the table's definition (never a hand-written copy); JSON as the ORM's serialiser writes it."""
    sql, order, json = _insert(table, tuple(row))
    await conn.execute(
        sql, *(orjson.dumps(row[name]).decode() if name in json else row[name] for name in order)
    )


async def transaction_lock(session: AsyncSession, key: int) -> None:
    """Take a transaction-scoped advisory lock; it is released at commit or rollback."""
    await session.execute(_XACT_LOCK, {"key": key})


async def pair_lock(session: AsyncSession, space: int, key: int) -> None:
    """Take a transaction-scoped advisory lock on (space, key), two 32-bit integers."""
    await session.execute(_PAIR_LOCK, {"space": space, "key": key})


async def try_pair_lock(session: AsyncSession, space: int, key: int) -> bool:
    """``pair_lock`` if no other transaction holds it; whether it was taken."""
    return bool(await session.scalar(_TRY_PAIR_LOCK, {"space": space, "key": key}))


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("select 1"))


async def user_by_email(session: AsyncSession, email: str) -> Row[Any] | None:
    """The user with this address (any case) and their home firm, before any tenant is known."""
    return (await session.execute(_USER_BY_EMAIL, {"email": email})).one_or_none()


async def redeem_token(session: AsyncSession, purpose: str, token_hash: bytes) -> Row[Any]:
    """Consume a token atomically; the row's status says ok, used, expired or invalid."""
    return (await session.execute(_REDEEM, {"purpose": purpose, "token_hash": token_hash})).one()


async def invitation_firm(session: AsyncSession, token_hash: bytes) -> uuid.UUID | None:
    """The firm a pending invitation (by its token's hash) is to, or None."""
    found: uuid.UUID | None = await session.scalar(_INVITATION_FIRM, {"token_hash": token_hash})
    return found


async def my_firms(session: AsyncSession) -> list[Row[Any]]:
    """The bound actor's memberships in every firm, with the firm names."""
    return list((await session.execute(_MY_FIRMS)).all())


async def sign_in_throttled_until(session: AsyncSession, address: bytes) -> datetime | None:
    """Until when password sign-in to this address (its throttle.address_key) is refused."""
    found: datetime | None = await session.scalar(_THROTTLED_UNTIL, {"address": address})
    return found


async def note_failed_sign_in(session: AsyncSession, address: bytes, threshold: int) -> None:
    await session.execute(_NOTE_FAILURE, {"address": address, "threshold": threshold})


async def clear_failed_sign_ins(session: AsyncSession, address: bytes) -> None:
    await session.execute(_CLEAR_FAILURES, {"address": address})


async def end_member_sessions(session: AsyncSession, user_id: object) -> int:
    """End a removed member's sessions in the bound firm; how many were live."""
    return int((await session.execute(_END_MEMBER_SESSIONS, {"user_id": user_id})).scalar_one())


async def hold_member_sessions(session: AsyncSession, user_id: object) -> None:
    """Lock a member's live sessions in the bound firm until the transaction ends (the acting
    admin's, before a removal takes the firm's chain lock: 0034)."""
    await session.execute(_HOLD_MEMBER_SESSIONS, {"user_id": user_id})


async def end_my_sessions(session: AsyncSession, user_id: object) -> list[Any]:
    """End every live session of the bound user (``user_id``), in every firm; the firm of each."""
    return list((await session.execute(_END_MY_SESSIONS, {"user_id": user_id})).scalars())


async def start_session(session: AsyncSession, values: Mapping[str, Any]) -> None:
    """Store a session of the bound user (``values["user_id"]``) in a firm they belong to,
    bound or not: id, token_hash, user_id, firm_id, expires_at, ip and user_agent."""
    await session.execute(_START_SESSION, dict(values))


async def platform_chain_head(session: AsyncSession) -> Row[Any] | None:
    """The platform chain's head, after taking the lock that serialises its appends."""
    return (await session.execute(_PLATFORM_HEAD)).one_or_none()


async def platform_chain_append(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(_PLATFORM_APPEND, values)


async def declaration_by_token(session: AsyncSession, token_hash: bytes) -> Row[Any] | None:
    """The declaration and firm a recipient's link belongs to, before the tenant is known."""
    return (await session.execute(_DECLARATION_TOKEN, {"token_hash": token_hash})).one_or_none()


async def retired_link(session: AsyncSession, token_hash: bytes) -> Row[Any] | None:
    """The declaration, firm and reason (replaced, withdrawn) of a recipient's link that no
    longer works, before the tenant is known."""
    return (await session.execute(_RETIRED_LINK, {"token_hash": token_hash})).one_or_none()


async def chain_heads(session: AsyncSession, revoked: Collection[str]) -> list[Row[Any]]:
    """Every firm's chain head and the seq of its latest checkpoint by a key not ``revoked``
    (for the periodic checkpointer)."""
    return list((await session.execute(_CHAIN_HEADS, {"revoked": sorted(revoked)})).all())


async def api_key_lookup(session: AsyncSession, secret_hash: bytes) -> Row[Any] | None:
    """The live key with this hash (marking it used), before the tenant is known."""
    return (await session.execute(_API_KEY, {"h": secret_hash})).one_or_none()
