"""Foundation: firms, users, memberships, sessions, the audit log; RLS, grants and triggers.

Revision ID: 0001
Revises:
"""

from alembic import op

from app.db.ddl import ACTOR, force_rls

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APP = "coverproof_app"
OWNER = "coverproof_owner"

TABLES = """
create table firms (
    id uuid primary key,
    name text not null check (char_length(name) between 1 and 200),
    frn text check (frn ~ '^[0-9]{6,7}$'),
    created_at timestamptz not null default now()
);

create table users (
    id uuid primary key,
    email text not null check (char_length(email) between 3 and 320),
    email_verified_at timestamptz,
    password_hash text,
    created_at timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

create table memberships (
    firm_id uuid not null references firms (id),
    user_id uuid not null references users (id),
    role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz not null default now(),
    primary key (firm_id, user_id)
);
create index memberships_user_idx on memberships (user_id);

create table sessions (
    id uuid primary key,
    token_hash bytea not null unique check (octet_length(token_hash) = 32),
    user_id uuid not null references users (id),
    firm_id uuid not null references firms (id),
    created_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    ip text,
    user_agent text check (char_length(user_agent) <= 512)
);
create index sessions_user_idx on sessions (user_id);

create table audit_log (
    id uuid primary key,
    firm_id uuid references firms (id),
    seq bigint not null check (seq >= 1),
    occurred_at timestamptz not null,
    actor_type text not null,
    actor_id text,
    action text not null,
    target_type text,
    target_id text,
    details jsonb not null,
    ip text,
    prev_hash bytea not null check (octet_length(prev_hash) = 32),
    hash bytea not null check (octet_length(hash) = 32),
    canonical bytea not null,
    constraint audit_log_chain_key unique nulls not distinct (firm_id, seq)
);
"""

# The DB checks every append against the chain head, so even a buggy or hostile app session
# cannot fork the chain, skip a seq, or store a hash that does not match its canonical bytes.
AUDIT_TRIGGERS = r"""
create function audit_log_check_append() returns trigger
language plpgsql set search_path = pg_catalog, public, pg_temp as $$
declare
    head_seq bigint;
    head_hash bytea;
    body jsonb;
begin
    if new.firm_id is null then
        select seq, hash into head_seq, head_hash from audit_log
        where firm_id is null order by seq desc limit 1;
    else
        select seq, hash into head_seq, head_hash from audit_log
        where firm_id = new.firm_id order by seq desc limit 1;
    end if;
    if new.seq <> coalesce(head_seq, 0) + 1
       or new.prev_hash <> coalesce(head_hash, decode(repeat('00', 32), 'hex')) then
        raise exception 'audit chain: entry % does not follow the head %', new.seq, head_seq
            using errcode = 'integrity_constraint_violation';
    end if;
    if new.hash <> sha256(new.prev_hash || new.canonical) then
        raise exception 'audit chain: hash does not match the canonical bytes'
            using errcode = 'integrity_constraint_violation';
    end if;
    body := convert_from(new.canonical, 'UTF8')::jsonb;
    if (body ->> 'seq')::bigint is distinct from new.seq
       or (body ->> 'firm_id') is distinct from new.firm_id::text
       or (body ->> 'action') is distinct from new.action then
        raise exception 'audit chain: canonical bytes disagree with the row'
            using errcode = 'integrity_constraint_violation';
    end if;
    return new;
end $$
--
create trigger audit_log_append before insert on audit_log
    for each row execute function audit_log_check_append()
--
create function audit_log_forbid_change() returns trigger
language plpgsql set search_path = pg_catalog, public, pg_temp as $$
begin
    raise exception 'audit_log is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege';
end $$
--
create trigger audit_log_no_update_delete before update or delete on audit_log
    for each row execute function audit_log_forbid_change()
--
create trigger audit_log_no_truncate before truncate on audit_log
    for each statement execute function audit_log_forbid_change();
"""

# Before the firm is known, the request's session cookie is resolved by this narrow function:
# it returns ids and the role only, and bumps last_seen_at at most once a minute.
SESSION_LOOKUP = """
create function auth_session_lookup(p_token_hash bytea, p_idle_seconds integer)
returns table (session_id uuid, user_id uuid, firm_id uuid, role text, email_verified boolean)
language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
declare
    found_session sessions%rowtype;
begin
    select s.* into found_session from sessions s
    where s.token_hash = p_token_hash
      and s.revoked_at is null
      and s.expires_at > now()
      and s.last_seen_at > now() - make_interval(secs => p_idle_seconds);
    if not found then
        return;
    end if;
    if found_session.last_seen_at < now() - interval '60 seconds' then
        update sessions set last_seen_at = now() where id = found_session.id;
    end if;
    return query
        select found_session.id, found_session.user_id, found_session.firm_id, m.role,
               u.email_verified_at is not null
        from users u
        join memberships m on m.user_id = u.id and m.firm_id = found_session.firm_id
        where u.id = found_session.user_id;
end $$
--
revoke all on function auth_session_lookup(bytea, integer) from public;
"""


def upgrade() -> None:
    for statement in TABLES.split(";\n"):
        if statement.strip():
            op.execute(statement)
    for statement in [
        *force_rls("firms", column="id"),
        *force_rls("memberships"),
        *force_rls("audit_log"),
        # users hold no firm data of their own: each sees itself and the members of its firm.
        "alter table users enable row level security",
        "alter table users force row level security",
        f"create policy member_visibility on users using (id = {ACTOR} or exists "
        "(select 1 from memberships m where m.user_id = users.id)) "
        f"with check (id = {ACTOR})",
        # sessions belong to their user (in every firm: sign out everywhere); the lookup only
        # honours a session while its user is still a member of the session's firm.
        "alter table sessions enable row level security",
        "alter table sessions force row level security",
        f"create policy own_sessions on sessions using (user_id = {ACTOR}) "
        f"with check (user_id = {ACTOR})",
        # The SECURITY DEFINER lookups run as the owner, which FORCE subjects to RLS too; these
        # policies (for the owner role only) let them find a session or user before the tenant
        # is known, and let the owner's platform chain live in audit_log with firm_id null.
        f"create policy platform_lookup on firms for select to {OWNER} using (true)",
        f"create policy platform_lookup on users for select to {OWNER} using (true)",
        f"create policy platform_lookup on memberships for select to {OWNER} using (true)",
        f"create policy platform_lookup on sessions to {OWNER} using (true) with check (true)",
        f"create policy platform_chain on audit_log to {OWNER} "
        "using (firm_id is null) with check (firm_id is null)",
    ]:
        op.execute(statement)
    for block in (AUDIT_TRIGGERS, SESSION_LOOKUP):
        for statement in block.split("\n--\n"):
            op.execute(statement)
    for statement in [
        "revoke create on schema public from public",
        "revoke all on all tables in schema public from public",
        f"revoke all on all tables in schema public from {APP}",
        f"grant usage on schema public to {APP}",
        f"grant select, insert, update on firms, users, sessions to {APP}",
        f"grant select, insert, update, delete on memberships to {APP}",
        f"grant select, insert on audit_log to {APP}",
        f"grant execute on function auth_session_lookup(bytea, integer) to {APP}",
    ]:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the foundation is not downgraded: audit_log is append-only")
