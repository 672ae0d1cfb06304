"""The one way to reach firm data: a transaction bound to exactly one tenant.

PostgreSQL's RLS policies read ``app.firm_id`` (and ``app.actor_id``). They are set with
``set_config(..., true)``, the parameterisable form of ``SET LOCAL``: the setting dies with the
transaction, so it cannot leak to the next request that borrows the same pooled connection. The
call is its own statement, never folded into a read of a row-secured table, because PostgreSQL
may scan the table before the setting takes effect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AppError

log = logging.getLogger("coverproof.db")

_BOUND = "coverproof.tenant_bound"
_UNDO = "coverproof.undo_on_rollback"
_ON_COMMIT = "coverproof.on_commit"
_SNAPSHOT = "coverproof.snapshot"
_SET_TENANT = text(
    "select set_config('app.firm_id', :firm_id, true), set_config('app.actor_id', :actor_id, true)"
)
# What the outbox's policies look for (migration 0011).
_SET_MAIL_SENDER = text("select set_config('app.mail_sender', 'on', true)")
# And bound to no firm, whatever the pooled connection's session was left holding: a firm set
# for the session (by code not ours, in a function the app calls) made audit_chain_heads refuse.
_SET_CHECKPOINTER = text(
    "select set_config('app.checkpointer', 'on', true), set_config('app.firm_id', '', true), "
    "set_config('app.actor_id', '', true)"
)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block succeeds, roll back on any exception; when it
    certainly did not commit, undo what was done outside the database for it (``on_rollback``).
    A commit that fails without PostgreSQL saying it rolled back (the connection lost, the
    request cancelled, the backend terminated) may have gone through: nothing is undone then,
    since undoing it could destroy what a committed row names (``app/evidence/sweep.py`` deletes
    later what no row names). Once it commits, what was left for then (``on_commit``) runs."""
    committing = False
    async with sessions() as session:
        try:
            async with session.begin():
                yield session
                committing = True
        except BaseException as error:
            if not committing or _rolled_back(error):
                await _undo(session)
            elif session.info.pop(_UNDO, None):
                log.warning("a commit failed and may have gone through; its undo is not run")
            raise
        for work in session.info.pop(_ON_COMMIT, ()):
            await work()


def _rolled_back(error: BaseException) -> bool:
    """Whether PostgreSQL answered the commit saying the transaction was rolled back: a
    constraint checked at commit (SQLSTATE class 23) or a serialisation failure (40)."""
    if not isinstance(error, DBAPIError):
        return False
    state = getattr(error.orig, "sqlstate", None)
    return isinstance(state, str) and state[:2] in {"23", "40"}


# PostgreSQL ended the transaction to break a deadlock, or as a serialisation failure: it did
# nothing wrong, and run again it normally succeeds (PostgreSQL's advice for both).
_RUN_AGAIN = frozenset({"40P01", "40001"})


class GiveWay(Exception):
    """Raised to end a transaction that met what another committed while it ran and cannot go
    on beside it (an account made meanwhile for the address it was adding): run again, it
    finds it, as PostgreSQL's deadlock victim, run again, finds the other transaction gone."""


def worth_running_again(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it wraps: a GraphQL error's original, a DBAPIError's driver
    error) says PostgreSQL rolled the transaction back to end a deadlock or a serialisation
    failure, or gave way (``GiveWay``), so that running the whole of it again is safe and likely
    to succeed."""
    seen = 0
    while error is not None and seen < 8:
        state = getattr(error, "sqlstate", None) or getattr(
            getattr(error, "orig", None), "sqlstate", None
        )
        if state in _RUN_AGAIN or isinstance(error, GiveWay):
            return True
        error = getattr(error, "original_error", None) or error.__cause__
        seen += 1
    return False


def on_commit(session: AsyncSession, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` once the session's transaction (one of ``transaction``'s) has committed:
    for what must know a commit happened, such as the audit witness. It must not raise."""
    session.info.setdefault(_ON_COMMIT, []).append(work)


def on_rollback(session: AsyncSession, undo: Callable[[], Awaitable[None]]) -> None:
    """Run ``undo`` if the session's transaction (one of ``transaction``'s) does not commit:
    for work done outside the database for rows that would otherwise be lost, such as a stored
    object its row no longer names."""
    session.info.setdefault(_UNDO, []).append(undo)


async def _undo(session: AsyncSession) -> None:
    for undo in session.info.pop(_UNDO, ()):
        try:
            await undo()
        except Exception:  # the transaction's own failure is the one to report
            log.exception("could not undo the work of a transaction that did not commit")


@asynccontextmanager
async def mail_sender_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """The mail sender's transaction: the only one that sees the outbox's rows (every firm's
    mail, and mail of no firm), to deliver and mark them. It binds no tenant, so no firm
    table's rows are visible in it."""
    async with transaction(sessions) as session:
        await session.execute(_SET_MAIL_SENDER)
        yield session


@asynccontextmanager
async def checkpointer_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """The periodic checkpointer's transaction, marked as the one in which
    ``audit_chain_heads`` lists every firm's chain head (0017; it raises in any other, and in
    this one once a tenant is bound). The mark keeps our own code honest, not an attacker out:
    any statement of the app role could set it, and only this module does."""
    async with transaction(sessions) as session:
        await session.execute(_SET_CHECKPOINTER)
        yield session


class TenantAlreadyBound(AppError):
    code = "BAD_REQUEST"
    default_message = "One request acts for one firm and one person; send these separately."


async def bind_tenant(
    session: AsyncSession, firm_id: uuid.UUID | None, actor_id: uuid.UUID | None
) -> None:
    """Set the transaction's tenant (and actor). A transaction is bound once: binding it again
    to the same tenant and actor does nothing; to another, raises TenantAlreadyBound."""
    bound = session.info.get(_BOUND)
    if bound is not None:
        if bound != (firm_id, actor_id):
            raise TenantAlreadyBound()
        return
    session.info[_BOUND] = (firm_id, actor_id)
    await session.execute(
        _SET_TENANT,
        {
            "firm_id": str(firm_id) if firm_id else "",
            "actor_id": str(actor_id) if actor_id else "",
        },
    )


@asynccontextmanager
async def snapshot_transaction(
    sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID, actor_id: uuid.UUID | None
) -> AsyncIterator[AsyncSession]:
    """A read-only transaction of the firm's that sees one moment (REPEATABLE READ): every
    statement in it agrees with every other, as the parts of an evidence pack must, whatever
    commits meanwhile. Its own connection, so it does not wait on the caller's transaction."""
    async with sessions() as session, session.begin():
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        session.info[_SNAPSHOT] = True
        await bind_tenant(session, firm_id, actor_id)
        yield session


def in_snapshot(session: AsyncSession) -> bool:
    """Whether the session is a ``snapshot_transaction``'s: it sees nothing committed since."""
    return bool(session.info.get(_SNAPSHOT))


@asynccontextmanager
async def tenant_transaction(
    sessions: async_sessionmaker[AsyncSession],
    firm_id: uuid.UUID | None,
    actor_id: uuid.UUID | None = None,
) -> AsyncIterator[AsyncSession]:
    """Begin, bind the tenant first thing, yield; commit on success, roll back on error."""
    async with transaction(sessions) as session:
        await bind_tenant(session, firm_id, actor_id)
        yield session
