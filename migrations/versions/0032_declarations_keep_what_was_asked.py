"""What a declaration asks, and of whom, never changes once it is made, in the database itself.

Revision ID: 0032
Revises: 0031

The app writes a declaration's form (its template, version and snapshot), its recipient, its
counterparty, due date and link days when it creates it, and never again; its link's expiry
changes only with a new link. 0013 holds its moves (status, link, answers), but not these:
code the app role runs (a bug included) could have changed the form a recipient is answering
after it was sent, readdressed it, or revived an expired link by pushing its expiry out (it
may still come sooner; and a retired link never comes back, so a stand-in link cannot carry
a later expiry to it), and the receipt would then hash the altered form. Nor does the app
ever change a template's version once written: the app role may no longer update one. The
owner and superusers are not held to it (migrations, and imports of a firm's earlier records).
"""

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

FIXED = (
    "id",
    "firm_id",
    "template_id",
    "template_version",
    "template_snapshot",
    "recipient_name",
    "recipient_email",
    "counterparty_id",
    "due_date",
    "link_days",
    "created_by",
    "created_at",
)
CHANGED = " or ".join(f"new.{column} is distinct from old.{column}" for column in FIXED)

STATEMENTS = [
    f"""create function declarations_keep_what_was_asked() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if current_user = 'coverproof_owner'
           or (select rolsuper from pg_roles where rolname = current_user) then
            return new;
        end if;
        if {CHANGED} then
            raise exception 'declaration % keeps the form, recipient and dates it was made with',
                old.id using errcode = 'integrity_constraint_violation';
        end if;
        -- A link once retired never comes back: put back after a stand-in, it would carry the
        -- stand-in's later expiry (the rule below, kept in two steps).
        if new.token_hash is distinct from old.token_hash and new.token_hash is not null
           and exists (select 1 from declaration_retired_link(new.token_hash)) then
            raise exception 'declaration % may not take back a retired link', old.id
                using errcode = 'integrity_constraint_violation';
        end if;
        if new.token_expires_at is distinct from old.token_expires_at
           and (new.token_hash is null or new.token_hash is not distinct from old.token_hash)
           and (old.token_expires_at is null or new.token_expires_at is null
                or new.token_expires_at > old.token_expires_at) then
            raise exception 'declaration % moves its link''s expiry later only with a new link',
                old.id using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end $$""",
    "create trigger declarations_keep_what_was_asked before update on declarations "
    "for each row execute function declarations_keep_what_was_asked()",
    "revoke update on template_versions from coverproof_app",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
