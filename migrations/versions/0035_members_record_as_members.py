"""What a member does is recorded only while they are a member.

Revision ID: 0035
Revises: 0034

A request reads its user's membership and role when it starts, and nothing read them again
before the commit: a member removed while their request ran (a pack's render, or a request run
again after a deadlock) had it commit after the removal, recorded in the firm's chain after
``member.removed`` as the removed member's; an admin demoted to viewer meanwhile still made
the API key they had asked for. A removal or a change of role holds the firm's chain lock until
it commits, and every change of a firm's data records under that lock, so the membership read
once the lock is held is the one the commit will stand on. ``member_locked_head`` is
``audit_locked_head`` (0009; the lock, then the head in a statement of its own, so a snapshot
taken once the lock is held) that also reads, in that statement, the role ``p_member`` holds
in the firm now (null if none): the app refuses a user no longer a member, or whose role is now
below the one their request was allowed with. It always answers one row (seq and hash null for
an empty chain). Not an ``audit_`` function: those are the seal's, which refuses the owner any
new one, so a sealed database could not take this migration. Only members' appends use it:
the owner may replace it, and so refuse them, but never fork or rewrite the chain (the sealed
trigger checks each append against the head); what acts for no member (the checkpointer) uses
the sealed one. SECURITY INVOKER: it reads what the app role sees.
"""

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create function member_locked_head(p_firm_id uuid, p_lock_key bigint, p_member uuid)
    returns table (seq bigint, hash bytea, role text)
    language plpgsql volatile security invoker set search_path = pg_catalog, public, pg_temp as $$
    begin
        perform pg_advisory_xact_lock(p_lock_key);
        return query
            select h.seq, h.hash, (
                select m.role from public.memberships m
                where m.firm_id = p_firm_id and m.user_id = p_member
            )
            from (select 1) as one
            left join lateral (
                select a.seq, a.hash from public.audit_log a
                where a.firm_id = p_firm_id order by a.seq desc limit 1
            ) as h on true;
    end $$""",
    "revoke all on function member_locked_head(uuid, bigint, uuid) from public",
    "grant execute on function member_locked_head(uuid, bigint, uuid) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
