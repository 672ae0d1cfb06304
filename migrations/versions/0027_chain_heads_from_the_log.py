"""The checkpointer lists the firms whose chains it signs from the audit log itself.

Revision ID: 0027
Revises: 0026

``audit_chain_heads`` listed every row of ``firms``, reading it as its owner: a row-level
policy the owner added on ``firms`` for itself could hide a firm from the checkpointer, whose
chain would then never be signed again. The firms are now those with a chain (a firm with
no entry has nothing to sign), found by a walk of the chain key's index, one firm a step. The
function searches pg_catalog alone and names its tables. It runs before the database is first
sealed (this release brings the seal, app/db/seal.py).
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create or replace function audit_chain_heads(p_revoked text[])
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
    begin
        if current_setting('app.checkpointer', true) is distinct from 'on'
           or coalesce(current_setting('app.firm_id', true), '') <> '' then
            raise exception 'every firm''s chain head is listed to the checkpointer alone'
                using errcode = '42501';
        end if;
        return query
            with recursive chains (id) as (
                (select a.firm_id from public.audit_log a
                 where a.firm_id is not null order by a.firm_id limit 1)
                union all
                select (select a.firm_id from public.audit_log a
                        where a.firm_id > chains.id order by a.firm_id limit 1)
                from chains where chains.id is not null
            )
            select chains.id,
                   (select max(a.seq) from public.audit_log a where a.firm_id = chains.id),
                   (select max(c.seq) from public.audit_checkpoints c
                    where c.firm_id = chains.id and c.key_id <> all (p_revoked))
            from chains where chains.id is not null;
    end $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
