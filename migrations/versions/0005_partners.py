"""Partner systems: firm API keys and the trusted (persisted) documents.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APP = "coverproof_app"

STATEMENTS = [
    """create table api_keys (
        id uuid primary key,
        firm_id uuid not null references firms (id),
        name text not null check (char_length(name) between 1 and 100),
        secret_hash bytea not null unique check (octet_length(secret_hash) = 32),
        display_prefix text not null,
        scopes text[] not null,
        created_by uuid references users (id),
        created_at timestamptz not null default now(),
        last_used_at timestamptz,
        expires_at timestamptz,
        revoked_at timestamptz,
        unique (id, firm_id)
    )""",
    *force_rls("api_keys"),
    f"grant select, insert, update on api_keys to {APP}",
    # Resolves a presented key (by the SHA-256 of the whole key) before the firm is known, and
    # marks it used; returns ids and scopes only. first_use is true for exactly one request:
    # the conditional UPDATE makes concurrent first requests queue on the row and re-check.
    """create function api_key_lookup(p_secret_hash bytea)
    returns table (key_id uuid, firm_id uuid, name text, scopes text[], first_use boolean)
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        k api_keys%rowtype;
        marked integer;
    begin
        select * into k from api_keys
        where secret_hash = p_secret_hash and revoked_at is null
          and (expires_at is null or expires_at > now());
        if not found then
            return;
        end if;
        update api_keys set last_used_at = now() where id = k.id and last_used_at is null;
        get diagnostics marked = row_count;
        if marked = 0 and k.last_used_at < now() - interval '60 seconds' then
            update api_keys set last_used_at = now() where id = k.id;
        end if;
        return query select k.id, k.firm_id, k.name, k.scopes, marked > 0;
    end $$""",
    "create policy platform_lookup on api_keys to coverproof_owner using (true) with check (true)",
    "revoke all on function api_key_lookup(bytea) from public",
    f"grant execute on function api_key_lookup(bytea) to {APP}",
    # The allow-list: operators load it (as the owner) with `coverproof persisted-queries load`;
    # the server only reads it. Not firm data: the same operations serve every firm.
    """create table trusted_documents (
        id text primary key check (id ~ '^[0-9a-f]{64}$'),
        body text not null,
        name text,
        operation_type text check (operation_type in ('query', 'mutation')),
        loaded_at timestamptz not null default now(),
        check (char_length(body) <= 100000)
    )""",
    f"grant select on trusted_documents to {APP}",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
