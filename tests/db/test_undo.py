"""``transaction`` undoes the outside work of a transaction that does not commit: when its block
fails and when PostgreSQL refuses its commit (a deferred constraint, checked only at commit);
never when it commits, nor when a commit fails in a way that may have let it through. An undo
that fails is logged and does not hide the transaction's own error."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.engine import create_engine, session_factory
from app.db.tenant import on_rollback, transaction
from tests.conftest import Database

Sessions = async_sessionmaker[AsyncSession]
# A temporary table whose uniqueness is checked only at commit.
DEFERRED = (
    "create temporary table undo_probe (n int unique deferrable initially deferred) on commit drop"
)


@pytest.fixture
def temp_sessions(superuser_engine: AsyncEngine) -> Sessions:
    """A superuser's sessions: no role of ours may make the temporary tables these use."""
    return session_factory(superuser_engine)


async def test_a_commit_that_fails_is_undone(temp_sessions: Sessions) -> None:
    undone: list[str] = []

    async def undo() -> None:
        undone.append("object")

    async def duplicate_found_at_commit() -> None:
        async with transaction(temp_sessions) as session:
            await session.execute(text(DEFERRED))
            await session.execute(text("insert into undo_probe values (1), (1)"))
            on_rollback(session, undo)
            assert undone == []  # nothing is undone before the commit is known to fail

    with pytest.raises(IntegrityError):
        await duplicate_found_at_commit()
    assert undone == ["object"]


async def test_a_block_that_fails_is_undone_and_its_error_stands(
    app_sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    undone: list[str] = []

    async def broken() -> None:
        raise OSError("the store is down")

    async def undo() -> None:
        undone.append("second")

    async def failing() -> None:
        async with transaction(app_sessions) as session:
            on_rollback(session, broken)
            on_rollback(session, undo)
            raise LookupError("the request's own failure")

    with pytest.raises(LookupError, match="the request's own"):
        await failing()
    assert undone == ["second"]  # one undo failing does not stop the others
    assert "could not undo" in caplog.text


async def test_a_commit_is_not_undone(app_sessions: Sessions) -> None:
    undone: list[str] = []

    async def undo() -> None:
        undone.append("object")

    async with transaction(app_sessions) as session:
        await session.execute(text("select 1"))
        on_rollback(session, undo)
    assert undone == []


async def test_a_commit_whose_outcome_is_unknown_is_not_undone(
    app_sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit that fails without PostgreSQL saying it rolled back may have gone through (the
    connection lost as the answer came): undoing it could destroy what its rows name. Here it
    did go through, and the failure came after."""
    undone: list[str] = []

    async def undo() -> None:
        undone.append("object")

    def lost(session: Session) -> None:
        raise ConnectionResetError("the answer to COMMIT never came")

    async def committed_then_lost() -> None:
        async with transaction(app_sessions) as session:
            event.listen(session.sync_session, "after_commit", lost)
            await session.execute(text("select 1"))
            on_rollback(session, undo)

    with pytest.raises(ConnectionResetError):
        await committed_then_lost()
    assert undone == []
    assert "may have gone through; its undo is not run" in caplog.text


# A commit that takes its time: a deferred trigger, run only at COMMIT, sleeps in it.
SLOW_COMMIT = (
    "create function pg_temp.slow_commit() returns trigger language plpgsql "
    "as $$ begin perform pg_sleep(30); return null; end $$",
    "create temporary table slow_probe (n int) on commit drop",
    "create constraint trigger slow after insert on slow_probe deferrable initially deferred "
    "for each row execute function pg_temp.slow_commit()",
    "insert into slow_probe values (1)",
)


async def test_a_request_cancelled_during_its_commit_is_not_undone(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A request cancelled while its COMMIT is on the wire (the client went away, a server
    shutting down) cannot know whether it committed: nothing is undone. Its own engine, since
    the cancelled connection is thrown away."""
    engine = create_engine(database.superuser_url, pool_size=2)  # it makes temporary tables
    undone: list[str] = []
    committing = asyncio.Event()

    async def undo() -> None:
        undone.append("object")

    async def slow() -> None:
        async with transaction(session_factory(engine)) as session:
            for statement in SLOW_COMMIT:
                await session.execute(text(statement))
            on_rollback(session, undo)
            event.listen(session.sync_session, "before_commit", lambda _: committing.set())

    try:
        request = asyncio.create_task(slow())
        await asyncio.wait_for(committing.wait(), 5)
        # Each poll its own transaction: pg_stat_activity is read once per transaction.
        async with engine.connect() as plain:
            watcher = await plain.execution_options(isolation_level="AUTOCOMMIT")
            for _ in range(100):
                sleeping = await watcher.scalar(
                    text(
                        "select count(*) from pg_stat_activity "
                        "where wait_event = 'PgSleep' and query ilike 'commit%'"
                    )
                )
                if sleeping:
                    break
                await asyncio.sleep(0.05)
        assert sleeping == 1  # the COMMIT is running
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    finally:
        await engine.dispose()
    assert undone == []
    assert "may have gone through; its undo is not run" in caplog.text
