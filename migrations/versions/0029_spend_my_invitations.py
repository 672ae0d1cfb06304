"""A user's password reset or "sign out everywhere" spends the invitations to their address.

Revision ID: 0029
Revises: 0028

Accepting an invitation signs in as the invited address's user, as a magic link does, for the
invitation's seven days: a link someone took from the mailbox kept that power after the user
reset the password or signed out everywhere, which spend the user's own links. Invitations
are rows of the inviting firms, which row security hides from the user's transaction; this
function, as the owner, spends those to the bound actor's own address (app.actor_id) and
nothing else, so the inviting firm's admin invites again.
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

STATEMENTS = [
    """create function auth_spend_my_invitations() returns integer
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        v_actor uuid := nullif(current_setting('app.actor_id', true), '')::uuid;
        spent integer;
    begin
        if v_actor is null then
            raise exception 'only a bound user''s invitations are spent'
                using errcode = 'insufficient_privilege';
        end if;
        update auth_tokens t set used_at = now()
        from users u
        where u.id = v_actor and t.purpose = 'invitation' and t.used_at is null
          and lower(t.email) = lower(u.email);
        get diagnostics spent = row_count;
        return spent;
    end $$""",
    "revoke all on function auth_spend_my_invitations() from public",
    "grant execute on function auth_spend_my_invitations() to coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop function auth_spend_my_invitations()")
