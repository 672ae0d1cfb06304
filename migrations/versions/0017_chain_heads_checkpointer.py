"""Every firm's chain head is listed only to the periodic checkpointer's own transactions.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# audit_chain_heads runs with the owner's rights and names every firm with how far its chain
# has grown: the app role needs it for the checkpointer alone. A request's transaction (bound
# to one firm, and never marked) now gets no rows from it, as the mail outbox is seen only by
# the sender's (0011). Only app/db/tenant.py sets the mark (tests/test_project.py holds
# set_config there).
STATEMENTS = [
    """create or replace function audit_chain_heads(p_revoked text[])
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select f.id,
               (select max(a.seq) from audit_log a where a.firm_id = f.id),
               (select max(c.seq) from audit_checkpoints c
                where c.firm_id = f.id and c.key_id <> all (p_revoked))
        from firms f
        where current_setting('app.checkpointer', true) = 'on'
          and coalesce(current_setting('app.firm_id', true), '') = ''
    $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
