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
# has grown: the app role needs it for the checkpointer alone. Called from any other
# transaction (a request's, bound to one firm or not yet bound), it now raises rather than
# answer, as loudly as a missing privilege would: processes of the previous release, whose
# checkpointer does not mark its transaction, log each run as failed until they are replaced
# (an empty answer would look like "nothing to sign"). The mark is a convention of our code,
# not a privilege: only app/db/tenant.py sets it (tests/test_project.py holds set_config
# there). The previous release's wrapper audit_chain_heads() (0014) now raises the same way.
STATEMENTS = [
    """create or replace function audit_chain_heads(p_revoked text[])
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language plpgsql stable security definer set search_path = pg_catalog, public, pg_temp as $$
    begin
        if current_setting('app.checkpointer', true) is distinct from 'on'
           or coalesce(current_setting('app.firm_id', true), '') <> '' then
            raise exception 'every firm''s chain head is listed to the checkpointer alone'
                using errcode = '42501';
        end if;
        return query
            select f.id,
                   (select max(a.seq) from audit_log a where a.firm_id = f.id),
                   (select max(c.seq) from audit_checkpoints c
                    where c.firm_id = f.id and c.key_id <> all (p_revoked))
            from firms f;
    end $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
