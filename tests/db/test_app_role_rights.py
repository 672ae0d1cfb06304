"""The app role may change only what the app changes (migrations 0025, 0028, 0030): a
statement the app never sends, run with the app's own rights in its own firm, cannot revive or
stretch a session, rewrite a user, plant a retired link, write an audit entry its bytes
disown, enrol someone else or date a membership back, or revive, widen or pre-use an API key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth import sessions
from app.config import Settings
from app.db.tenant import tenant_transaction
from tests.factories import Member, Members

OWN_SESSION = "select id from sessions where token_hash = :h"


async def _refused(
    sessions_: async_sessionmaker[AsyncSession], member: Member, statement: str, **params: object
) -> str:
    """What PostgreSQL answers the statement, run as the app role bound to the member."""
    with pytest.raises(DBAPIError) as refused:
        async with tenant_transaction(sessions_, member.firm_id, member.user_id) as session:
            await session.execute(text(statement), params)
    return str(refused.value.orig)


@pytest.mark.parametrize(
    "change",
    [
        "expires_at = 'infinity'",
        "token_hash = sha256('x'::bytea)",
        "user_id = user_id",
        "last_seen_at = now()",
    ],
)
async def test_only_when_a_session_was_revoked_may_be_changed(
    members: Members, app_sessions: async_sessionmaker[AsyncSession], change: str
) -> None:
    member = await members.create()
    answer = await _refused(
        app_sessions,
        member,
        f"update sessions set {change} where token_hash = :h",
        h=sessions.token_hash(member.cookie),
    )
    assert "permission denied for table sessions" in answer


async def test_a_revoked_session_stays_revoked(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member = await members.create()
    own = {"h": sessions.token_hash(member.cookie)}
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        revoked = await session.execute(
            text("update sessions set revoked_at = now() where token_hash = :h"), own
        )
        assert revoked.rowcount == 1  # type: ignore[attr-defined]
    for back in ("null", "now() + interval '1 day'"):
        answer = await _refused(
            app_sessions,
            member,
            f"update sessions set revoked_at = {back} where token_hash = :h",
            **own,
        )
        assert "a revoked session stays revoked" in answer
    # Whoever writes: the rule is the table's, not the app role's.
    with pytest.raises(DBAPIError, match="a revoked session stays revoked"):
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("update sessions set revoked_at = null where token_hash = :h"), own
            )


HOME_FIRM = "select firm_id from auth_user_by_email(:e)"
NEW_KEY = (
    "insert into api_keys (id, firm_id, name, secret_hash, display_prefix, scopes, created_by, "
    "last_used_at) values (:id, :f, 'k', sha256(gen_random_uuid()::text::bytea), 'cp_', "
    "array['declarations:read'], :by, {used})"
)


async def test_a_key_is_changed_only_to_revoke_it_and_a_revoked_key_stays_revoked(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """Unrevoked, widened or lengthened by a statement the app never sends, a key would work
    again, or do more, with nothing on the audit trail."""
    member = await members.create()
    key = {"id": uuid.uuid4(), "f": member.firm_id, "by": member.user_id}
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        await session.execute(text(NEW_KEY.format(used="null")), key)
        revoked = await session.execute(
            text("update api_keys set revoked_at = now() where id = :id"), key
        )
        assert revoked.rowcount == 1  # type: ignore[attr-defined]
    for change in ("scopes = array['audit:read']", "expires_at = null", "last_used_at = now()"):
        answer = await _refused(
            app_sessions, member, f"update api_keys set {change} where id = :id", **key
        )
        assert "permission denied for table api_keys" in answer
    answer = await _refused(
        app_sessions, member, "update api_keys set revoked_at = null where id = :id", **key
    )
    assert "a revoked key stays revoked" in answer
    with pytest.raises(DBAPIError, match="a revoked key stays revoked"):  # whoever writes
        async with superuser_engine.begin() as conn:
            await conn.execute(text("update api_keys set revoked_at = null where id = :id"), key)


@pytest.mark.parametrize("made", ["used", "by another"])
async def test_a_key_is_made_unused_by_the_actor_of_its_transaction(
    members: Members, app_sessions: async_sessionmaker[AsyncSession], made: str
) -> None:
    """A key made already used would never have its first use recorded (only a key not yet
    used is audited on its first request)."""
    member, other = await members.create(), await members.create()
    key = {"id": uuid.uuid4(), "f": member.firm_id, "by": member.user_id}
    if made == "by another":
        key["by"] = other.user_id
    used = "now()" if made == "used" else "null"
    answer = await _refused(app_sessions, member, NEW_KEY.format(used=used), **key)
    assert "a key is made unused and unrevoked, by the actor of its transaction" in answer


@pytest.mark.parametrize(
    "change", ["user_id = :other", "created_at = '2000-01-01'", "firm_id = firm_id"]
)
async def test_only_a_members_role_may_be_changed(
    members: Members, app_sessions: async_sessionmaker[AsyncSession], change: str
) -> None:
    """Moving another firm's user into the firm would show the firm their address; dating a
    membership back would make the firm their home, where their next sign-in lands."""
    member, other = await members.create(), await members.create()
    answer = await _refused(
        app_sessions,
        member,
        f"update memberships set {change} where user_id = :u",
        u=member.user_id,
        other=other.user_id,
    )
    assert "permission denied for table memberships" in answer
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        allowed = await session.execute(
            text("update memberships set role = 'owner' where user_id = :u"), {"u": member.user_id}
        )
        assert allowed.rowcount == 1  # type: ignore[attr-defined]


async def test_a_membership_is_made_only_for_the_transactions_actor_and_from_now(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    member, other = await members.create(), await members.create()
    enrol = (
        "insert into memberships (firm_id, user_id, role, created_at) "
        "values (:f, :u, 'viewer', '2000-01-01')"
    )
    answer = await _refused(app_sessions, member, enrol, f=member.firm_id, u=other.user_id)
    assert "a membership is made only for the actor of its transaction" in answer
    # As the actor (an accepted invitation's), enrolled, but dated as it happens.
    async with tenant_transaction(app_sessions, member.firm_id, other.user_id) as session:
        await session.execute(text(enrol), {"f": member.firm_id, "u": other.user_id})
    async with superuser_engine.connect() as conn:
        dated = await conn.scalar(
            text("select created_at from memberships where firm_id = :f and user_id = :u"),
            {"f": member.firm_id, "u": other.user_id},
        )
        assert dated > datetime.now(UTC) - timedelta(minutes=5)
        assert await conn.scalar(text(HOME_FIRM), {"e": other.email}) == other.firm_id


@pytest.mark.parametrize(
    "change", ["email = 'someone@example.test'", "created_at = now()", "id = id"]
)
async def test_only_a_users_password_and_proved_address_may_be_changed(
    members: Members, app_sessions: async_sessionmaker[AsyncSession], change: str
) -> None:
    member = await members.create()
    answer = await _refused(
        app_sessions, member, f"update users set {change} where id = :u", u=member.user_id
    )
    assert "permission denied for table users" in answer
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        allowed = await session.execute(
            text("update users set password_hash = null, email_verified_at = now() where id = :u"),
            {"u": member.user_id},
        )
        assert allowed.rowcount == 1  # type: ignore[attr-defined]


async def test_a_session_starts_for_at_most_thirty_days_whatever_is_asked(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    member = await members.create()
    session_id = uuid.uuid4()
    async with tenant_transaction(app_sessions, member.firm_id, member.user_id) as session:
        await session.execute(
            text("select auth_start_session(:id, sha256(:h), :u, :f, 'infinity', null, null)"),
            {"id": session_id, "h": session_id.bytes, "u": member.user_id, "f": member.firm_id},
        )
        expires = (
            await session.execute(
                text("select expires_at from sessions where id = :id"), {"id": session_id}
            )
        ).scalar_one()
    assert expires <= datetime.now(UTC) + timedelta(days=30)
    assert expires > datetime.now(UTC) + timedelta(days=29)


@pytest.mark.parametrize(("hours", "taken"), [(720, True), (721, False), (0, False)])
def test_the_session_lifetime_setting_stays_within_what_the_database_starts(
    hours: int, taken: bool
) -> None:
    if taken:
        assert Settings(session_lifetime_hours=hours).session_lifetime_hours == hours
    else:
        with pytest.raises(ValidationError):
            Settings(session_lifetime_hours=hours)


async def test_the_app_role_cannot_plant_a_retired_link(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Only the trigger on declarations writes them (as the owner, from the firm's own update;
    tests/declarations cover that it does)."""
    member = await members.create()
    answer = await _refused(
        app_sessions,
        member,
        "insert into retired_links (token_hash, firm_id, declaration_id, reason) "
        "values (sha256('x'::bytea), :f, gen_random_uuid(), 'replaced')",
        f=member.firm_id,
    )
    assert "permission denied for table retired_links" in answer
