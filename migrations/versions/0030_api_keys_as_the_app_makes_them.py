"""The app role changes a key only to revoke it, and makes it unused, by its transaction's actor.

Revision ID: 0030
Revises: 0029

Like 0025 and 0028, this narrows what a statement of the app role could do within its firm,
were one ever sent that the app does not send (a bug). It could update every column of
api_keys: bring a revoked key back, or widen a key's scopes or lengthen its life, with no
entry on the audit trail; and insert a key already marked used, whose first use (audited
only on the normal path, for a key not yet used) would then never be recorded. The app
writes revoked_at alone, when an admin revokes a key, and makes each key unused and
unrevoked, created by the admin making it. A revoked key stays revoked, whoever writes.
"""

from alembic import op

from app.db.ddl import ACTOR

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

APP = "coverproof_app"
STATEMENTS = [
    f"revoke update on api_keys from {APP}",
    f"grant update (revoked_at) on api_keys to {APP}",
    f"""create function api_keys_as_the_app_makes_them() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if tg_op = 'UPDATE' then
            if old.revoked_at is not null and new.revoked_at is distinct from old.revoked_at then
                raise exception 'a revoked key stays revoked'
                    using errcode = 'insufficient_privilege';
            end if;
            return new;
        end if;
        if current_user = 'coverproof_owner'
           or (select rolsuper from pg_roles where rolname = current_user) then
            return new;  -- provisioning, and an administrator's repairs
        end if;
        if new.last_used_at is not null or new.revoked_at is not null
           or new.created_by is distinct from {ACTOR} then
            raise exception 'a key is made unused and unrevoked, by the actor of its transaction'
                using errcode = 'insufficient_privilege';
        end if;
        return new;
    end $$""",
    "create trigger api_keys_as_the_app_makes_them before insert or update on api_keys "
    "for each row execute function api_keys_as_the_app_makes_them()",
    "revoke all on function api_keys_as_the_app_makes_them() from public",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop trigger api_keys_as_the_app_makes_them on api_keys")
    op.execute("drop function api_keys_as_the_app_makes_them()")
    op.execute(f"grant update on api_keys to {APP}")
