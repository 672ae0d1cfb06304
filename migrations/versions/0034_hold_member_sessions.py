"""A removal holds the member's sessions before it takes the firm's chain lock.

Revision ID: 0034
Revises: 0033

Every request of a member holds its session's row from its start when the lookup marks the
session seen (``auth_session_lookup``, at most once a minute), and ending a session holds its
row, each then taking the firm's chain lock to record. A removal took the chain lock, then
waited for the member's session rows to end them: it deadlocked with the member's sign-out,
and, behind the member's slowest request (a pack's render and upload), it held the chain lock
that every write of the firm waits for. ``auth_hold_member_sessions`` takes the rows first, as
the member's own requests do, so the removal waits for those holding nothing of the firm's.
As ``auth_end_member_sessions`` (0020): the owner's, for the transaction's firm only, and for
its admins and owners acting; it locks nothing else and changes nothing.
"""

from alembic import op

from app.db.ddl import ACTOR

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

STATEMENTS = [
    # Holds nothing for one who is not an admin now (demoted since their request began): the
    # removal then refuses them FORBIDDEN, under the chain lock, as before.
    f"""create function auth_hold_member_sessions(p_user uuid) returns void
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        v_firm uuid := nullif(current_setting('app.firm_id', true), '')::uuid;
    begin
        perform 1 from sessions s
        where s.user_id = p_user and s.firm_id = v_firm and s.revoked_at is null
          and exists (select 1 from memberships m where m.firm_id = v_firm
                      and m.user_id = {ACTOR} and m.role in ('owner', 'admin'))
        for no key update of s;
    end $$""",
    "revoke all on function auth_hold_member_sessions(uuid) from public",
    "grant execute on function auth_hold_member_sessions(uuid) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
