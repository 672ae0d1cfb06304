"""What the app role can still do with its own rights is only what the app does.

Revision ID: 0025
Revises: 0024
"""

from alembic import op

from app.db.ddl import ACTOR

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# RLS and the definer functions' checks keep each request to its own firm and user; these
# narrow what a statement of the app role could do inside them, were one ever sent that the
# app does not send (a bug, an injection): the rights the app never uses are taken away, and
# a few rules hold in the database whoever writes.
#
# - It updated any column of its own sessions and user row; the app changes only when a
#   session was revoked, and a user's password hash and when the address was proved. A
#   revoked session could have been revived, or made to last for ever.
# - A revoked session stays revoked, for every role.
# - A session starts for at most 30 days (the longest session_lifetime_hours allows), whatever
#   the caller asks: a session forged through the function would otherwise never end.
# - retired_links rows are written by their trigger alone, as the owner, from the row the
#   firm's own update changed: the app role inserting one could have planted another firm's
#   hash (whose later retirement, on conflict, would then be dropped).
# - An audit entry's stored fields must say what its canonical bytes say, all of them (0001
#   checked seq, firm and action): verification finds a difference in an entry already
#   written; this refuses one as it is written. Its details are compared as jsonb (1.0 equals
#   1 there); verification compares them exactly.
CANONICAL_TIME = """to_char(new.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
STATEMENTS = [
    "revoke update on sessions, users from coverproof_app",
    "grant update (revoked_at) on sessions to coverproof_app",
    "grant update (password_hash, email_verified_at) on users to coverproof_app",
    """create function sessions_stay_revoked() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if old.revoked_at is not null and new.revoked_at is distinct from old.revoked_at then
            raise exception 'a revoked session stays revoked'
                using errcode = 'insufficient_privilege';
        end if;
        return new;
    end $$""",
    "create trigger sessions_stay_revoked before update on sessions "
    "for each row execute function sessions_stay_revoked()",
    "revoke all on function sessions_stay_revoked() from public",
    f"""create or replace function auth_start_session(
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
        values (p_id, p_token_hash, p_user, p_firm, now(), now(),
                least(p_expires_at, now() + interval '30 days'), p_ip, p_user_agent);
    end $$""",
    "revoke insert on retired_links from coverproof_app",
    "alter function declarations_retire_link() security definer",
    # As the owner, it writes outside any tenant context too (an operator's update); the
    # declaration it names holds the firm it writes (their key).
    "create policy retire on retired_links for insert to coverproof_owner with check (true)",
    "revoke all on function declarations_retire_link() from public",
    f"""create or replace function audit_log_check_append() returns trigger
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
           or (body ->> 'action') is distinct from new.action
           or (body ->> 'occurred_at') is distinct from {CANONICAL_TIME}
           or (body -> 'actor' ->> 'type') is distinct from new.actor_type
           or (body -> 'actor' ->> 'id') is distinct from new.actor_id
           or (body -> 'target' ->> 'type') is distinct from new.target_type
           or (body -> 'target' ->> 'id') is distinct from new.target_id
           or (body -> 'details') is distinct from new.details
           or (body ->> 'ip') is distinct from new.ip then
            raise exception 'audit chain: canonical bytes disagree with the row'
                using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end $$""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
