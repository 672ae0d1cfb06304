"""The app role enrols only the actor of its transaction, from now, and changes only a role.

Revision ID: 0028
Revises: 0027

Like 0025, this narrows what a statement of the app role could do within its firm, were one
ever sent that the app does not send (a bug). It could insert and update every column of
memberships: it could enrol another firm's user in its own firm (the foreign key ignores row
security), whose address the firm could then read, or date that membership back, so that the
user's next sign-in would land in the firm (a user's home firm is their oldest membership).
The app enrols a user only as the actor of the transaction (a sign-up, an accepted
invitation) and changes only a member's role. The actor is the transaction's setting, which
the app role sets itself, as it sets its tenant: like row security, this holds against a
statement gone wrong, not against one written to get past it (an injection).
"""

from alembic import op

from app.db.ddl import ACTOR, TENANT

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

APP = "coverproof_app"
STATEMENTS = [
    f"revoke update on memberships from {APP}",
    f"grant update (role) on memberships to {APP}",
    f"""create function memberships_as_the_app_makes_them() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if current_user = 'coverproof_owner'
           or (select rolsuper from pg_roles where rolname = current_user) then
            return new;  -- provisioning, and an administrator's repairs
        end if;
        -- A row of another firm is the tenant policy's to refuse, as for every table.
        if new.firm_id = {TENANT} and new.user_id is distinct from {ACTOR} then
            raise exception 'a membership is made only for the actor of its transaction'
                using errcode = 'insufficient_privilege';
        end if;
        if new.created_at is null or new.created_at < now() then
            new.created_at := now();
        end if;
        return new;
    end $$""",
    "create trigger memberships_as_the_app_makes_them before insert on memberships "
    "for each row execute function memberships_as_the_app_makes_them()",
    "revoke all on function memberships_as_the_app_makes_them() from public",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop trigger memberships_as_the_app_makes_them on memberships")
    op.execute("drop function memberships_as_the_app_makes_them()")
    op.execute(f"grant update on memberships to {APP}")
