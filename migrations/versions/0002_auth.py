"""Authentication: single-use tokens, sign-in throttling, the mail outbox, the platform chain.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from app.db.ddl import ACTOR, force_rls

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP = "coverproof_app"
OWNER = "coverproof_owner"
ROLES = "('owner', 'admin', 'member', 'viewer')"

TABLES = [
    "alter table users add column failed_sign_ins integer not null default 0, "
    "add column throttled_until timestamptz",
    f"""create table auth_tokens (
        id uuid primary key,
        purpose text not null
            check (purpose in ('verify_email', 'magic_link', 'password_reset', 'invitation')),
        token_hash bytea not null unique check (octet_length(token_hash) = 32),
        user_id uuid references users (id),
        firm_id uuid references firms (id),
        email text check (char_length(email) <= 320),
        role text check (role in {ROLES}),
        created_by uuid references users (id),
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        used_at timestamptz,
        check ((purpose = 'invitation') = (firm_id is not null)),
        check ((purpose = 'invitation') = (user_id is null))
    )""",
    "create index auth_tokens_user_idx on auth_tokens (user_id)",
    "create index auth_tokens_firm_idx on auth_tokens (firm_id)",
    # Mail is a platform concern (sign-up mail precedes any firm); bodies hold links with tokens,
    # so they are sealed with the server key (AES-GCM) and erased once delivered.
    """create table mail_outbox (
        id uuid primary key,
        created_at timestamptz not null default now(),
        to_address text not null check (char_length(to_address) <= 320),
        subject text not null,
        body bytea,
        key_id bytea not null check (octet_length(key_id) = 8),
        attempts integer not null default 0,
        next_attempt_at timestamptz not null default now(),
        sent_at timestamptz,
        last_error text
    )""",
    "create index mail_outbox_due_idx on mail_outbox (key_id, next_attempt_at) "
    "where sent_at is null",
]

POLICIES = [
    *force_rls("auth_tokens"),
    # A user's own tokens (verification, magic link, reset) carry no firm.
    f"create policy own_tokens on auth_tokens using (firm_id is null and user_id = {ACTOR}) "
    f"with check (firm_id is null and user_id = {ACTOR})",
    f"create policy platform_lookup on auth_tokens to {OWNER} using (true) with check (true)",
    f"create policy platform_lookup_update on users for update to {OWNER} "
    "using (true) with check (true)",
]

# Narrow lookups that must run before the firm is known. Each returns the few ids it must.
FUNCTIONS = [
    """create function auth_user_by_email(p_email text)
    returns table (user_id uuid, password_hash text, email_verified boolean,
                   throttled_until timestamptz, firm_id uuid, role text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select u.id, u.password_hash, u.email_verified_at is not null, u.throttled_until,
               m.firm_id, m.role
        from users u
        left join lateral (
            select firm_id, role from memberships
            where memberships.user_id = u.id order by created_at, firm_id limit 1
        ) m on true
        where lower(u.email) = lower(p_email)
    $$""",
    # Redemption is one conditional UPDATE: of concurrent redemptions exactly one wins. For a
    # user's own token the firm returned is the user's home firm (the one they sign in to).
    """create function auth_redeem_token(p_purpose text, p_token_hash bytea)
    returns table (status text, user_id uuid, firm_id uuid, email text, role text)
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    declare
        t auth_tokens%rowtype;
        result_status text;
    begin
        update auth_tokens set used_at = now()
        where token_hash = p_token_hash and purpose = p_purpose
          and used_at is null and expires_at > now()
        returning * into t;
        if found then
            result_status := 'ok';
        else
            select * into t from auth_tokens
            where token_hash = p_token_hash and purpose = p_purpose;
            if not found then
                return query select 'invalid'::text, null::uuid, null::uuid, null::text, null::text;
                return;
            end if;
            result_status := case when t.used_at is not null then 'used' else 'expired' end;
        end if;
        if t.firm_id is not null then
            return query select result_status, t.user_id, t.firm_id, t.email, t.role;
        else
            return query select result_status, u.id, m.firm_id, u.email, m.role
            from users u
            left join lateral (
                select ms.firm_id, ms.role from memberships ms
                where ms.user_id = u.id order by ms.created_at, ms.firm_id limit 1
            ) m on true
            where u.id = t.user_id;
        end if;
    end $$""",
    # The signed-in actor's own firms (for switchFirm and the firm picker), never anyone else's.
    f"""create function auth_my_firms()
    returns table (firm_id uuid, firm_name text, role text)
    language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
        select m.firm_id, f.name, m.role from memberships m join firms f on f.id = m.firm_id
        where m.user_id = {ACTOR} order by f.name, m.firm_id
    $$""",
    # Growing delays after p_threshold consecutive failures: 1 s, 2 s, 4 s ... capped at 1 h.
    """create function auth_note_failed_sign_in(p_user_id uuid, p_threshold integer)
    returns timestamptz
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
        update users set
            failed_sign_ins = failed_sign_ins + 1,
            throttled_until = case when failed_sign_ins + 1 >= p_threshold
                then now() + least(interval '1 hour',
                    interval '1 second' * power(2, least(failed_sign_ins + 1 - p_threshold, 12)))
                else throttled_until end
        where id = p_user_id
        returning throttled_until
    $$""",
    # The platform chain (events that belong to no firm): head under a lock, then the append.
    """create function audit_platform_head() returns table (seq bigint, hash bytea)
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
    begin
        perform pg_advisory_xact_lock(0);
        return query select a.seq, a.hash from audit_log a
            where a.firm_id is null order by a.seq desc limit 1;
    end $$""",
    """create function audit_platform_append(
        p_id uuid, p_seq bigint, p_occurred_at timestamptz, p_actor_type text, p_actor_id text,
        p_action text, p_target_type text, p_target_id text, p_details jsonb, p_ip text,
        p_prev_hash bytea, p_hash bytea, p_canonical bytea)
    returns void
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
        insert into audit_log (id, firm_id, seq, occurred_at, actor_type, actor_id, action,
            target_type, target_id, details, ip, prev_hash, hash, canonical)
        values (p_id, null, p_seq, p_occurred_at, p_actor_type, p_actor_id, p_action,
            p_target_type, p_target_id, p_details, p_ip, p_prev_hash, p_hash, p_canonical)
    $$""",
]
SIGNATURES = [
    "auth_user_by_email(text)",
    "auth_redeem_token(text, bytea)",
    "auth_my_firms()",
    "auth_note_failed_sign_in(uuid, integer)",
    "audit_platform_head()",
    "audit_platform_append(uuid, bigint, timestamptz, text, text, text, text, text, jsonb, "
    "text, bytea, bytea, bytea)",
]


def upgrade() -> None:
    for statement in [*TABLES, *POLICIES, *FUNCTIONS]:
        op.execute(statement)
    for signature in SIGNATURES:
        op.execute(f"revoke all on function {signature} from public")
        op.execute(f"grant execute on function {signature} to {APP}")
    op.execute(f"grant select, insert, update on auth_tokens, mail_outbox to {APP}")


def downgrade() -> None:
    raise NotImplementedError("forward-only")
