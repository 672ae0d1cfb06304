"""What a member does is recorded only while they are a member.

Revision ID: 0035
Revises: 0034

A request reads its user's membership when it starts, and nothing read it again before the
commit: a member removed while their request ran (a pack's render, or a request run again
after a deadlock) had it commit after the removal, recorded in the firm's chain after
``member.removed`` as the removed member's. A removal holds the firm's chain lock until it
commits, and every change of a firm's data records under that lock, so the membership read
once the lock is held is the one the commit will stand on. ``audit_member_locked_head`` is
``audit_locked_head`` (0009) that then refuses, as ``insufficient_privilege``, a user who is no
longer a member of the firm (``p_member``; null for an actor that is not a user). SECURITY
INVOKER: it reads the memberships the app role sees.
"""

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create function audit_member_locked_head(p_firm_id uuid, p_lock_key bigint, p_member uuid)
    returns table (seq bigint, hash bytea)
    language plpgsql volatile security invoker set search_path = pg_catalog, public, pg_temp as $$
    begin
        perform pg_advisory_xact_lock(p_lock_key);
        if p_member is not null and not exists (
            select 1 from memberships m where m.firm_id = p_firm_id and m.user_id = p_member
        ) then
            raise exception 'the acting user is no longer a member of the firm'
                using errcode = 'insufficient_privilege';
        end if;
        return query
            select a.seq, a.hash from audit_log a
            where a.firm_id = p_firm_id order by a.seq desc limit 1;
    end $$""",
    "revoke all on function audit_member_locked_head(uuid, bigint, uuid) from public",
    "grant execute on function audit_member_locked_head(uuid, bigint, uuid) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
