"""What a member does is recorded only while they are a member.

Revision ID: 0035
Revises: 0034

A request reads its user's membership and role when it starts, and nothing read them again
before the commit: a member removed while their request ran (a pack's render, or a request run
again after a deadlock) had it commit after the removal, recorded in the firm's chain after
``member.removed`` as the removed member's; an admin demoted to viewer meanwhile still made
the API key they had asked for. A removal or a change of role holds the firm's chain lock until
it commits, and every change of a firm's data records under that lock, so the membership read
once the lock is held is the one the commit will stand on. ``member_locked_head`` takes the lock
and reads the head through ``audit_locked_head`` (0009), then, in a statement of its own (so a
snapshot taken once the lock is held), the role ``p_member`` holds in the firm now (null if
none; a null member for an actor that is not a user): the app refuses a user no longer a member,
or whose role is now below the one their request was allowed with. It always answers one row
(seq and hash null for an empty chain). Not an ``audit_`` function: those are the seal's, which
refuses the owner any new one, so a sealed database could not take this migration; the lock
and the head stay the sealed function's. SECURITY INVOKER: it reads what the app role sees.
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
    declare
        head record;
        found_role text;
    begin
        select h.seq, h.hash into head from public.audit_locked_head(p_firm_id, p_lock_key) h;
        select m.role into found_role from public.memberships m
        where m.firm_id = p_firm_id and m.user_id = p_member;
        return query select head.seq, head.hash, found_role;
    end $$""",
    "revoke all on function member_locked_head(uuid, bigint, uuid) from public",
    "grant execute on function member_locked_head(uuid, bigint, uuid) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
