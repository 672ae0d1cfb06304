"""A recipient's link that was replaced or withdrawn is still known for what it was.

Revision ID: 0024
Revises: 0023
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# A reminder or a reissue replaces a declaration's link, and revoking the declaration withdraws
# it; the declaration then holds the new hash, or none, so the old link was answered as one
# never issued: its recipient was told only that it was not valid, and nothing was recorded,
# since no firm could be found for it. The database now keeps each retired hash, with its
# declaration and why, whichever code changes the link: a trigger writes it, in the same
# transaction, under the firm's RLS (and its key names the declaration with its firm, as
# every key between firm tables does). Its lookup, like the live one (0003), runs before the
# firm is known and returns only the ids needed to bind it.
STATEMENTS = [
    """create table retired_links (
        token_hash bytea primary key,
        firm_id uuid not null references firms (id),
        declaration_id uuid not null,
        reason text not null check (reason in ('replaced', 'withdrawn')),
        retired_at timestamptz not null default now(),
        foreign key (declaration_id, firm_id) references declarations (id, firm_id)
    )""",
    "create index retired_links_declaration_idx on retired_links (firm_id, declaration_id)",
    *force_rls("retired_links"),
    "grant select, insert on retired_links to coverproof_app",
    """create function declarations_retire_link() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if old.token_hash is not null and new.token_hash is distinct from old.token_hash then
            insert into retired_links (token_hash, firm_id, declaration_id, reason)
            values (old.token_hash, old.firm_id, old.id,
                    case when new.token_hash is null then 'withdrawn' else 'replaced' end)
            on conflict (token_hash) do nothing;
        end if;
        return null;
    end $$""",
    "create trigger declarations_retire_link after update of token_hash on declarations "
    "for each row execute function declarations_retire_link()",
    # A link replaced by a reminder and then withdrawn with its declaration is withdrawn too.
    """create function declaration_retired_link(p_token_hash bytea)
    returns table (declaration_id uuid, firm_id uuid, reason text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select r.declaration_id, r.firm_id,
               case when d.status = 'revoked' then 'withdrawn' else r.reason end
        from retired_links r
        join declarations d on d.id = r.declaration_id and d.firm_id = r.firm_id
        where r.token_hash = p_token_hash
    $$""",
    "create policy platform_lookup on retired_links for select to coverproof_owner using (true)",
    "revoke all on function declaration_retired_link(bytea) from public",
    "grant execute on function declaration_retired_link(bytea) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
