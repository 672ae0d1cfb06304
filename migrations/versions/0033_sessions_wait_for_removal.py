"""A session starts only while its membership holds, and a removal waits for it to start.

Revision ID: 0033
Revises: 0032

``auth_start_session`` checked that its user was a member of its firm, then inserted the
session, taking no lock on the membership: a member removed meanwhile (a switch into the firm,
a sign-in, as the admin removed them) had their sessions in the firm ended by the removal,
which could not see this one, not yet committed. It stayed unusable only while they were not
a member, and came back with a re-invitation, which a removal promises it will not. The check
now holds the membership (``for key share``) until the session's transaction ends: a removal
deleting it waits, then ends the session with the others; one committed first leaves nothing
to hold, and the session is refused.
"""

from alembic import op

from app.db.ddl import ACTOR

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

STATEMENTS = [
    # Locking a row needs it to pass an update policy too; the owner (whose function locks it)
    # had only a select one. This one lets it lock, and update nothing (its check fails).
    "create policy platform_lock on memberships for update to coverproof_owner "
    "using (true) with check (false)",
    f"""create or replace function auth_start_session(
        p_id uuid, p_token_hash bytea, p_user uuid, p_firm uuid, p_expires_at timestamptz,
        p_ip text, p_user_agent text)
    returns void
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    begin
        perform 1 from memberships m where m.firm_id = p_firm and m.user_id = p_user
            for key share;
        if p_user is distinct from {ACTOR} or not found then
            raise exception 'a session starts only for its own user, a member of its firm'
                using errcode = 'insufficient_privilege';
        end if;
        insert into sessions (id, token_hash, user_id, firm_id, created_at, last_seen_at,
                              expires_at, ip, user_agent)
        values (p_id, p_token_hash, p_user, p_firm, now(), now(),
                least(p_expires_at, now() + interval '30 days'), p_ip, p_user_agent);
    end $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
