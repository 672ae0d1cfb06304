"""A session is seen only in its own firm's tenant context, as every other firm row is.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

from app.db.ddl import ACTOR, TENANT

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# Sessions belonged to their user in every firm, so a user of two firms, bound to one, read
# (and could change) their sessions in the other: rows of a firm whose tenant context was not
# set, which our security page says no query can see. Now the app role sees and changes only
# the bound user's sessions in the bound firm. The two moves that cross firms go through
# functions that run as the owner and do only that move, for the bound user alone:
# ending every session of theirs (sign out everywhere, a password reset, an address proved),
# and starting one in a firm they belong to (every sign-in, and switching firms, which starts
# the new session while the transaction is bound to the firm left). The app role may no longer
# insert sessions itself: every session starts through the second, so none starts for anyone
# but a member of its firm.
#
# The previous release's processes cannot work with this: their switchFirm and sign-ins write
# sessions themselves, and their sign-out everywhere and password resets would end only the
# bound firm's sessions. Stop them before this migration runs (docs/deployment.md).
START = "auth_start_session(uuid, bytea, uuid, uuid, timestamptz, text, text)"
STATEMENTS = [
    f"alter policy own_sessions on sessions "
    f"using (user_id = {ACTOR} and firm_id = {TENANT}) "
    f"with check (user_id = {ACTOR} and firm_id = {TENANT})",
    f"""create function auth_end_my_sessions(p_user uuid) returns table (firm_id uuid)
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    begin
        if p_user is distinct from {ACTOR} then
            raise exception 'a user''s sessions are ended only by that user'
                using errcode = 'insufficient_privilege';
        end if;
        return query
            update sessions s set revoked_at = now()
            where s.user_id = p_user and s.revoked_at is null
            returning s.firm_id;
    end $$""",
    f"""create function auth_start_session(
        p_id uuid, p_token_hash bytea, p_user uuid, p_firm uuid, p_expires_at timestamptz,
        p_ip text, p_user_agent text)
    returns void
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    begin
        if p_user is distinct from {ACTOR} or not exists (
            select 1 from memberships m where m.firm_id = p_firm and m.user_id = p_user
        ) then
            raise exception 'a session starts only for its own user, a member of its firm'
                using errcode = 'insufficient_privilege';
        end if;
        insert into sessions (id, token_hash, user_id, firm_id, created_at, last_seen_at,
                              expires_at, ip, user_agent)
        values (p_id, p_token_hash, p_user, p_firm, now(), now(), p_expires_at, p_ip,
                p_user_agent);
    end $$""",
    "revoke all on function auth_end_my_sessions(uuid) from public",
    "grant execute on function auth_end_my_sessions(uuid) to coverproof_app",
    f"revoke all on function {START} from public",
    f"grant execute on function {START} to coverproof_app",
    "revoke insert on sessions from coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
