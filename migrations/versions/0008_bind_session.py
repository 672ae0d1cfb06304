"""One round trip for a signed-in request: resolve the session cookie and bind its tenant.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATEMENTS = [
    # SECURITY INVOKER: it runs as the app role, so nothing it enables escapes RLS. It resolves
    # the cookie through the definer lookup (the same checks: revoked, expired, idle, still a
    # member), then sets the transaction-local tenant, which later statements of the same
    # transaction see; it reads no row-secured table after setting it.
    """create function auth_bind_session(p_token_hash bytea, p_idle_seconds integer)
    returns table (session_id uuid, user_id uuid, firm_id uuid, role text, email_verified boolean)
    language plpgsql security invoker set search_path = pg_catalog, public, pg_temp as $$
    declare
        found_session record;
    begin
        select * into found_session from auth_session_lookup(p_token_hash, p_idle_seconds);
        if not found then
            return;
        end if;
        perform set_config('app.firm_id', found_session.firm_id::text, true),
                set_config('app.actor_id', found_session.user_id::text, true);
        return query select found_session.session_id, found_session.user_id,
                            found_session.firm_id, found_session.role,
                            found_session.email_verified;
    end $$""",
    "revoke all on function auth_bind_session(bytea, integer) from public",
    "grant execute on function auth_bind_session(bytea, integer) to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
