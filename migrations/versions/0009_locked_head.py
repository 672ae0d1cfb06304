"""One round trip for the head of a firm's chain, read under the firm's chain lock.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATEMENTS = [
    # Two statements in one call: VOLATILE plpgsql takes a fresh snapshot for each, so the head
    # is read after the lock is held and sees the append of whoever held it last. SECURITY
    # INVOKER: RLS applies as for any read of the app role.
    """create function audit_locked_head(p_firm_id uuid, p_lock_key bigint)
    returns table (seq bigint, hash bytea)
    language plpgsql volatile security invoker set search_path = pg_catalog, public, pg_temp as $$
    begin
        perform pg_advisory_xact_lock(p_lock_key);
        return query
            select a.seq, a.hash from audit_log a
            where a.firm_id = p_firm_id order by a.seq desc limit 1;
    end $$""",
    "revoke all on function audit_locked_head(uuid, bigint) from public",
    "grant execute on function audit_locked_head(uuid, bigint) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
