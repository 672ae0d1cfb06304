"""The audit tables' trigger functions find nothing in public: their search path is pg_catalog's.

Revision ID: 0026
Revises: 0025

They searched public too, where the tables' owner may create functions and operators: an
overload of ``convert_from(bytea, text)`` there is a closer match for the append check's
``convert_from(new.canonical, 'UTF8')`` than pg_catalog's ``(bytea, name)``, and it would have
run in every append and could have answered the check with bytes of its choosing, so that an
entry's stored fields need not say what its canonical bytes say. The chain head is now read
from ``public.audit_log`` by name.

It changes an audit trigger's function, which the seal (app/db/seal.py) refuses to the owner:
it runs before the database is first sealed (this release brings the seal). Later changes to
the audit tables are the administrator's, by hand. The previous release's processes keep
working throughout.
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

CANONICAL_TIME = """to_char(new.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

STATEMENTS = [
    "alter function audit_log_forbid_change() set search_path = pg_catalog, pg_temp",
    f"""create or replace function audit_log_check_append() returns trigger
    language plpgsql set search_path = pg_catalog, pg_temp as $$
    declare
        head_seq bigint;
        head_hash bytea;
        body jsonb;
    begin
        if new.firm_id is null then
            select seq, hash into head_seq, head_hash from public.audit_log
            where firm_id is null order by seq desc limit 1;
        else
            select seq, hash into head_seq, head_hash from public.audit_log
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
