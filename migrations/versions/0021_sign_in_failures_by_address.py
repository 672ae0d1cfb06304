"""Failed password sign-ins are counted by address, registered or not.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# Counted on the user, the throttle told anyone with a hundred wrong passwords to spare that an
# address is registered: a registered one came to answer RATE_LIMITED, an unknown one never
# did. Counted by address (its SHA-256, lower-cased), the same way whether or not an account
# has it, the answers cannot differ. Only the owner's functions touch the table: the app role
# holds no grant on it, and RLS is forced with a policy for the owner alone.
STATEMENTS = [
    """create table sign_in_failures (
        address_sha256 bytea primary key,
        failures integer not null,
        throttled_until timestamptz
    )""",
    "alter table sign_in_failures enable row level security",
    "alter table sign_in_failures force row level security",
    "create policy platform_lookup on sign_in_failures to coverproof_owner "
    "using (true) with check (true)",
    # What the users' counters held carries over.
    """insert into sign_in_failures
        select sha256(convert_to(lower(email), 'UTF8')), failed_sign_ins, throttled_until
        from users where failed_sign_ins > 0""",
    """create function auth_sign_in_throttled_until(p_email text) returns timestamptz
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select throttled_until from sign_in_failures
        where address_sha256 = sha256(convert_to(lower(p_email), 'UTF8'))
    $$""",
    # The user's former rule: from the threshold on, throttled for 1 s, doubling per failure,
    # at most an hour.
    """create function auth_note_failed_sign_in_by_address(p_email text, p_threshold integer)
    returns timestamptz
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
        insert into sign_in_failures as f (address_sha256, failures, throttled_until)
        values (sha256(convert_to(lower(p_email), 'UTF8')), 1,
                case when 1 >= p_threshold then now() + interval '1 second' end)
        on conflict (address_sha256) do update set
            failures = f.failures + 1,
            throttled_until = case when f.failures + 1 >= p_threshold
                then now() + least(interval '1 hour',
                    interval '1 second' * power(2, least(f.failures + 1 - p_threshold, 12)))
                else f.throttled_until end
        returning throttled_until
    $$""",
    """create function auth_clear_sign_in_failures(p_email text) returns void
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
        delete from sign_in_failures
        where address_sha256 = sha256(convert_to(lower(p_email), 'UTF8'))
    $$""",
    "drop function auth_note_failed_sign_in(uuid, integer)",
    "drop function auth_user_by_email(text)",
    """create function auth_user_by_email(p_email text)
    returns table (user_id uuid, password_hash text, email_verified boolean, firm_id uuid,
                   role text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select u.id, u.password_hash, u.email_verified_at is not null, m.firm_id, m.role
        from users u
        left join lateral (
            select firm_id, role from memberships
            where memberships.user_id = u.id order by created_at, firm_id limit 1
        ) m on true
        where lower(u.email) = lower(p_email)
    $$""",
    "alter table users drop column failed_sign_ins, drop column throttled_until",
]
SIGNATURES = [
    "auth_sign_in_throttled_until(text)",
    "auth_note_failed_sign_in_by_address(text, integer)",
    "auth_clear_sign_in_failures(text)",
    "auth_user_by_email(text)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    for signature in SIGNATURES:
        op.execute(f"revoke all on function {signature} from public")
        op.execute(f"grant execute on function {signature} to coverproof_app")


def downgrade() -> None:
    raise NotImplementedError("forward-only")
