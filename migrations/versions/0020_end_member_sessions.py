"""Removing a member ends their sessions in the firm.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# A removed member's sessions stopped working only because the lookup requires a membership:
# re-invited within a session's lifetime, they (and any copy of their cookie) worked again.
# Sessions belong to their user under RLS, so the admin removing the member cannot end them;
# this function, as the owner, ends them and nothing else: only in the transaction's bound
# firm, only for an admin or owner of it acting (app.actor_id), and only for a user who is no
# longer a member of it (removed earlier in the same transaction).
STATEMENTS = [
    """create function auth_end_member_sessions(p_user uuid) returns integer
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        v_firm uuid := nullif(current_setting('app.firm_id', true), '')::uuid;
        v_actor uuid := nullif(current_setting('app.actor_id', true), '')::uuid;
        ended integer;
    begin
        if v_firm is null or not exists (
            select 1 from memberships m
            where m.firm_id = v_firm and m.user_id = v_actor and m.role in ('owner', 'admin')
        ) then
            raise exception 'only a firm''s admin may end its members'' sessions'
                using errcode = 'insufficient_privilege';
        end if;
        if exists (select 1 from memberships m where m.firm_id = v_firm and m.user_id = p_user)
        then
            raise exception 'a member''s sessions end only once they are removed'
                using errcode = 'insufficient_privilege';
        end if;
        update sessions set revoked_at = now()
        where user_id = p_user and firm_id = v_firm and revoked_at is null;
        get diagnostics ended = row_count;
        return ended;
    end $$""",
    "revoke all on function auth_end_member_sessions(uuid) from public",
    "grant execute on function auth_end_member_sessions(uuid) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
