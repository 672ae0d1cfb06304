"""Declarations: firm templates and their versions, counterparties, declarations and responses.

Built-in templates are data files shipped with the app (app/declarations/builtin/), not rows.
A declaration pins the exact questions it was sent with (``template_snapshot``), so editing a
template never changes what an earlier recipient saw or answered.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP = "coverproof_app"

TABLES = [
    """create table declaration_templates (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        name text not null check (char_length(name) between 1 and 200),
        audience text not null check (audience in ('person', 'counterparty')),
        latest_version integer not null default 1 check (latest_version >= 1),
        created_by uuid references users (id),
        created_at timestamptz not null default now(),
        archived_at timestamptz,
        unique (id, firm_id)
    )""",
    """create table template_versions (
        id uuid primary key,
        firm_id uuid not null,
        template_id uuid not null,
        version integer not null check (version >= 1),
        questions jsonb not null,
        attestation text not null,
        created_by uuid references users (id),
        created_at timestamptz not null default now(),
        unique (firm_id, template_id, version),
        foreign key (template_id, firm_id) references declaration_templates (id, firm_id)
    )""",
    """create table counterparties (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        name text not null check (char_length(name) between 1 and 200),
        kind text not null check (kind in ('appointed_representative', 'introducer', 'insurer',
            'outsourced_service_provider', 'other')),
        frn text check (frn ~ '^[0-9]{6,7}$'),
        contact_name text check (char_length(contact_name) <= 200),
        contact_email text check (char_length(contact_email) <= 320),
        notes text check (char_length(notes) <= 5000),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        archived_at timestamptz,
        unique (id, firm_id)
    )""",
    "create index counterparties_firm_name_idx on counterparties (firm_id, lower(name))",
    """create table declarations (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        template_id uuid not null,
        template_version integer not null,
        template_snapshot jsonb not null,
        recipient_name text not null check (char_length(recipient_name) between 1 and 200),
        recipient_email text not null check (char_length(recipient_email) <= 320),
        counterparty_id uuid,
        due_date date,
        status text not null default 'draft'
            check (status in ('draft', 'sent', 'opened', 'submitted', 'revoked')),
        created_by uuid,
        created_at timestamptz not null default now(),
        sent_at timestamptz,
        opened_at timestamptz,
        submitted_at timestamptz,
        revoked_at timestamptz,
        last_reminded_at timestamptz,
        reminder_count integer not null default 0,
        token_hash bytea unique check (octet_length(token_hash) = 32),
        token_expires_at timestamptz,
        answers jsonb,
        attestation_accepted boolean,
        signature_name text,
        submitted_ip text,
        submitted_user_agent text check (char_length(submitted_user_agent) <= 512),
        response_sha256 bytea check (octet_length(response_sha256) = 32),
        unique (id, firm_id),
        foreign key (counterparty_id, firm_id) references counterparties (id, firm_id)
    )""",
    "create index declarations_page_idx on declarations (firm_id, created_at desc, id desc)",
    "create index declarations_status_idx on declarations (firm_id, status)",
    "create index declarations_counterparty_idx on declarations (firm_id, counterparty_id)",
]

# A recipient's token is resolved before the firm is known; this returns only the ids needed to
# bind the tenant, then everything else runs under RLS in that firm's context.
LINK_LOOKUP = """create function declaration_token_lookup(p_token_hash bytea)
returns table (declaration_id uuid, firm_id uuid)
language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
    select id, firm_id from declarations where token_hash = p_token_hash
$$"""


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    for table in ("declaration_templates", "template_versions", "counterparties", "declarations"):
        for statement in force_rls(table):
            op.execute(statement)
    op.execute(
        "create policy platform_lookup on declarations for select to coverproof_owner using (true)"
    )
    op.execute(LINK_LOOKUP)
    op.execute("revoke all on function declaration_token_lookup(bytea) from public")
    op.execute(f"grant execute on function declaration_token_lookup(bytea) to {APP}")
    op.execute(
        f"grant select, insert, update on declaration_templates, template_versions, "
        f"counterparties, declarations to {APP}"
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only")
