"""A declaration's form is kept once per firm, by its hash, not copied into every declaration.

Revision ID: 0036
Revises: 0035

Every declaration held its own copy of the template version it was sent with (up to the
request's 100 KB), and a bulk create makes 500 at once: one member could add some 50 MB to the
database in one request, 120 times a minute, for every firm to share the disk. A firm's forms
now live in ``declaration_forms`` under the SHA-256 of their canonical bytes (the receipt's
``form_sha256``), and a declaration names its form by that hash, with its firm: the key is the
pair, so no declaration can name another firm's form, and RLS keeps each firm to its own. The
app role may add a form but never change or remove one, so what a declaration asks stays what
it was sent with; 0032's rule now keeps the hash too. Declarations made before keep their own
copy (``template_snapshot``, set on no later row): exactly one of the two is set.
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

FIXED = (
    "id",
    "firm_id",
    "template_id",
    "template_version",
    "template_snapshot",
    "form_sha256",
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
    """create table declaration_forms (
        firm_id uuid not null references firms (id),
        sha256 bytea not null check (octet_length(sha256) = 32),
        snapshot jsonb not null check (jsonb_typeof(snapshot) = 'object'),
        created_at timestamptz not null default now(),
        primary key (firm_id, sha256)
    )""",
    *force_rls("declaration_forms"),
    "grant select, insert on declaration_forms to coverproof_app",
    "alter table declarations alter column template_snapshot drop not null",
    "alter table declarations add column form_sha256 bytea",
    "alter table declarations add constraint declarations_form_fkey "
    "foreign key (firm_id, form_sha256) references declaration_forms (firm_id, sha256)",
    "alter table declarations add constraint declarations_one_form "
    "check (num_nonnulls(template_snapshot, form_sha256) = 1)",
    # 0032's function, keeping the form's hash as well.
    f"""create or replace function declarations_keep_what_was_asked() returns trigger
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
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
