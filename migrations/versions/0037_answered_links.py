"""An old link of a request since answered says it was answered.

Revision ID: 0037
Revises: 0036

A link replaced by a reminder or a reissue was answered "replaced: use the newest link" even
once the request had been answered through that newest link, which then answered only that it
was used: whoever held the old email never learned the request had been answered, which is what
they need to know should they not have answered it. ``declaration_retired_link`` (0024) now
says ``answered`` for a submitted declaration's retired link, as it says ``withdrawn`` for a
revoked one's. Nothing stored changes.
"""

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create or replace function declaration_retired_link(p_token_hash bytea)
    returns table (declaration_id uuid, firm_id uuid, reason text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select r.declaration_id, r.firm_id,
               case d.status when 'revoked' then 'withdrawn' when 'submitted' then 'answered'
                             else r.reason end
        from retired_links r
        join declarations d on d.id = r.declaration_id and d.firm_id = r.firm_id
        where r.token_hash = p_token_hash
    $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
