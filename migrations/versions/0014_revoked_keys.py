"""Checkpoints after a key is revoked: one per seq and key, and heads counted without a revoked
key's checkpoints.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APP = "coverproof_app"

# A checkpoint by a revoked key (COVERPROOF_AUDIT_REVOKED_KEY_IDS) vouches for nothing, and no
# checkpoint can be deleted: a seq one holds must still be signable by a trusted key, so a seq
# is unique per key, not per firm. One key still signs a seq once.
STATEMENTS = [
    "alter table audit_checkpoints drop constraint audit_checkpoints_firm_id_seq_key",
    "alter table audit_checkpoints add constraint audit_checkpoints_firm_id_seq_key_id_key "
    "unique (firm_id, seq, key_id)",
    # For the periodic checkpointer, as in 0004: each firm's chain head and its latest
    # checkpoint by a key not revoked, ids and numbers only.
    "drop function audit_chain_heads()",
    """create function audit_chain_heads(p_revoked text[])
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select f.id,
               (select max(a.seq) from audit_log a where a.firm_id = f.id),
               (select max(c.seq) from audit_checkpoints c
                where c.firm_id = f.id and c.key_id <> all (p_revoked))
        from firms f
    $$""",
    "revoke all on function audit_chain_heads(text[]) from public",
    f"grant execute on function audit_chain_heads(text[]) to {APP}",
    # What processes of the previous release call, until they are replaced.
    """create function audit_chain_heads()
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select * from audit_chain_heads('{}'::text[])
    $$""",
    "revoke all on function audit_chain_heads() from public",
    f"grant execute on function audit_chain_heads() to {APP}",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
