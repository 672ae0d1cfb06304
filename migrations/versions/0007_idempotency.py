"""Idempotency keys: a client retrying a create after an uncertain commit gets the first result.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create table idempotency_keys (
        firm_id uuid not null references firms (id),
        actor_id text not null,
        key text not null check (char_length(key) between 1 and 100),
        operation text not null,
        result jsonb not null,
        created_at timestamptz not null default now(),
        primary key (firm_id, actor_id, key)
    )""",
    *force_rls("idempotency_keys"),
    "grant select, insert on idempotency_keys to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
