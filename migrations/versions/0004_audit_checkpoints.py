"""Signed audit checkpoints: the firm's chain head, signed with the platform's Ed25519 key.

A hash chain alone cannot reveal a whole-chain rewrite or a cut-off tail by someone with owner
rights; a signed checkpoint, handed to the firm in exports and evidence packs, can. Checkpoints
are append-only like the log itself.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APP = "coverproof_app"

STATEMENTS = [
    """create table audit_checkpoints (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        seq bigint not null check (seq >= 1),
        head_hash bytea not null check (octet_length(head_hash) = 32),
        signed_at timestamptz not null,
        key_id text not null,
        signature bytea not null check (octet_length(signature) = 64),
        created_by text,
        unique (firm_id, seq)
    )""",
    *force_rls("audit_checkpoints"),
    "create trigger audit_checkpoints_no_update_delete before update or delete "
    "on audit_checkpoints for each row execute function audit_log_forbid_change()",
    "create trigger audit_checkpoints_no_truncate before truncate on audit_checkpoints "
    "for each statement execute function audit_log_forbid_change()",
    f"grant select, insert on audit_checkpoints to {APP}",
    # For the periodic checkpointer, which runs before any tenant is bound: each firm's chain
    # head and its latest checkpoint, ids and numbers only.
    """create function audit_chain_heads()
    returns table (firm_id uuid, head_seq bigint, checkpoint_seq bigint)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select f.id,
               (select max(a.seq) from audit_log a where a.firm_id = f.id),
               (select max(c.seq) from audit_checkpoints c where c.firm_id = f.id)
        from firms f
    $$""",
    "create policy platform_lookup on audit_log for select to coverproof_owner using (true)",
    "create policy platform_lookup on audit_checkpoints for select to coverproof_owner "
    "using (true)",
    "revoke all on function audit_chain_heads() from public",
    f"grant execute on function audit_chain_heads() to {APP}",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only: checkpoints are append-only")
