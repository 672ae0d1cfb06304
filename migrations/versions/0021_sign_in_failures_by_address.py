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
# did. Counted by address, the same way whether or not an account has it, the answers cannot
# differ. The key is the app's HMAC of the address (app/auth/throttle.py), not a plain hash a
# guess could reverse; counts start afresh. Rows a month quiet are pruned as failures arrive.
# Only the owner's functions touch the table: the app role holds no grant on it, and RLS is
# forced with a policy for the owner alone.
#
# The users' failed_sign_ins and throttled_until, and auth_note_failed_sign_in, stay for the
# previous release's processes during a rolling deploy; a later migration drops them.
STATEMENTS = [
    """create table sign_in_failures (
        address_key bytea primary key,
        failures integer not null,
        throttled_until timestamptz,
        last_failed_at timestamptz not null
    )""",
    "create index sign_in_failures_quiet_idx on sign_in_failures (last_failed_at)",
    "alter table sign_in_failures enable row level security",
    "alter table sign_in_failures force row level security",
    "create policy platform_lookup on sign_in_failures to coverproof_owner "
    "using (true) with check (true)",
    """create function auth_sign_in_throttled_until(p_address bytea) returns timestamptz
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select throttled_until from sign_in_failures where address_key = p_address
    $$""",
    # The users' former rule: from the threshold on, throttled for 1 s, doubling with each
    # failure, at most an hour.
    """create function auth_note_failed_sign_in_by_address(p_address bytea, p_threshold integer)
    returns timestamptz
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        until timestamptz;
    begin
        delete from sign_in_failures where address_key in (
            select address_key from sign_in_failures
            where last_failed_at < now() - interval '30 days' limit 100);
        insert into sign_in_failures as f (address_key, failures, throttled_until, last_failed_at)
        values (p_address, 1,
                case when 1 >= p_threshold then now() + interval '1 second' end, now())
        on conflict (address_key) do update set
            failures = f.failures + 1,
            throttled_until = case when f.failures + 1 >= p_threshold
                then now() + least(interval '1 hour',
                    interval '1 second' * power(2, least(f.failures + 1 - p_threshold, 12)))
                else f.throttled_until end,
            last_failed_at = now()
        returning f.throttled_until into until;
        return until;
    end $$""",
    """create function auth_clear_sign_in_failures(p_address bytea) returns void
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
        delete from sign_in_failures where address_key = p_address
    $$""",
]
SIGNATURES = [
    "auth_sign_in_throttled_until(bytea)",
    "auth_note_failed_sign_in_by_address(bytea, integer)",
    "auth_clear_sign_in_failures(bytea)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    for signature in SIGNATURES:
        op.execute(f"revoke all on function {signature} from public")
        op.execute(f"grant execute on function {signature} to coverproof_app")


def downgrade() -> None:
    raise NotImplementedError("forward-only")
