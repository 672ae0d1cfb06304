"""One round trip for a partner's request: resolve an API key already in use and bind its firm.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STATEMENTS = [
    # Like api_key_lookup (0005), for a key that is live and has been used before: a key's first
    # use is audited, which only the normal path does, so a never-used key answers nothing here
    # and its request goes there. Marks use at most once a minute, as api_key_lookup does.
    """create function api_key_peek(p_secret_hash bytea)
    returns table (key_id uuid, firm_id uuid, scopes text[])
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        k api_keys%rowtype;
    begin
        select * into k from api_keys
        where secret_hash = p_secret_hash and revoked_at is null
          and (expires_at is null or expires_at > now()) and last_used_at is not null;
        if not found then
            return;
        end if;
        if k.last_used_at < now() - interval '60 seconds' then
            update api_keys set last_used_at = now() where id = k.id;
        end if;
        return query select k.id, k.firm_id, k.scopes;
    end $$""",
    "revoke all on function api_key_peek(bytea) from public",
    "grant execute on function api_key_peek(bytea) to coverproof_app",
    # SECURITY INVOKER, as auth_bind_session (0008): the key's firm and the key as the actor,
    # transaction-local, for the statements that follow in the caller's transaction.
    """create function api_key_bind(p_secret_hash bytea)
    returns table (key_id uuid, firm_id uuid, scopes text[])
    language plpgsql security invoker set search_path = pg_catalog, public, pg_temp as $$
    declare
        found_key record;
    begin
        select * into found_key from api_key_peek(p_secret_hash);
        if not found then
            return;
        end if;
        perform set_config('app.firm_id', found_key.firm_id::text, true),
                set_config('app.actor_id', found_key.key_id::text, true);
        return query select found_key.key_id, found_key.firm_id, found_key.scopes;
    end $$""",
    "revoke all on function api_key_bind(bytea) from public",
    "grant execute on function api_key_bind(bytea) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
