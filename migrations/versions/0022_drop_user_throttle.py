"""The throttle counted on the user is gone: 0021 counts failed sign-ins by address.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# 0021 kept these for the processes of the release before it during a rolling deploy; no
# release since reads or writes them. Left in place, auth_note_failed_sign_in would stay a
# function the app role may call, as the owner, that no code needs, and the lookup by email
# would go on returning a column nothing reads. The lookup loses that column (its other
# columns, the ones the app selects by name, are unchanged), in this one transaction.
STATEMENTS = [
    "drop function auth_note_failed_sign_in(uuid, integer)",
    "drop function auth_user_by_email(text)",
    """create function auth_user_by_email(p_email text)
    returns table (user_id uuid, password_hash text, email_verified boolean,
                   firm_id uuid, role text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select u.id, u.password_hash, u.email_verified_at is not null, m.firm_id, m.role
        from users u
        left join lateral (
            select firm_id, role from memberships
            where memberships.user_id = u.id order by created_at, firm_id limit 1
        ) m on true
        where lower(u.email) = lower(p_email)
    $$""",
    "revoke all on function auth_user_by_email(text) from public",
    "grant execute on function auth_user_by_email(text) to coverproof_app",
    "alter table users drop column failed_sign_ins, drop column throttled_until",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
