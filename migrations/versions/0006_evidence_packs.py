"""Evidence packs: a firm's PDF proof, at a point in time, of what was declared and what happened.

The row records the request (title, scope), its outcome (pending -> ready | failed, with a
reason) and, once ready, where the PDF is stored and its SHA-256, size and page count. The PDF
itself lives in object storage (or the local folder), never in the database.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP = "coverproof_app"

STATEMENTS = [
    """create table evidence_packs (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        title text not null check (char_length(title) between 1 and 200),
        scope jsonb not null check (jsonb_typeof(scope) = 'object'),
        status text not null default 'pending' check (status in ('pending', 'ready', 'failed')),
        failure_reason text check (char_length(failure_reason) <= 1000),
        storage_key text check (char_length(storage_key) <= 1024),
        sha256 bytea check (octet_length(sha256) = 32),
        size_bytes bigint check (size_bytes >= 0),
        page_count integer check (page_count >= 1),
        created_by uuid references users (id),
        created_at timestamptz not null default now(),
        completed_at timestamptz,
        unique (id, firm_id),
        -- A ready pack always says where its file is and what its bytes hash to.
        check (status <> 'ready' or (storage_key is not null and sha256 is not null
            and size_bytes is not null and page_count is not null and completed_at is not null)),
        check (status <> 'failed' or failure_reason is not null)
    )""",
    "create index evidence_packs_page_idx on evidence_packs (firm_id, created_at desc, id desc)",
    *force_rls("evidence_packs"),
    f"grant select, insert, update on evidence_packs to {APP}",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
