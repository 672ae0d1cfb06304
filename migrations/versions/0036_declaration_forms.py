"""A declaration's form is kept once per firm, by its hash, not copied into every declaration.

Revision ID: 0036
Revises: 0035

Every declaration held its own copy of the template version it was sent with (up to the
request's 100 KB), and a bulk create makes 500 at once: one member could add some 50 MB to the
database in one request, 120 times a minute, for every firm to share the disk. A firm's forms
now live in ``declaration_forms`` under the SHA-256 the database computes of each (of its
jsonb's text, as UTF-8: ``declaration_form_key``), and a declaration names its form by that
hash (``form_key``), with its firm: the key is the pair, so no declaration can name another
firm's form, and RLS keeps each firm to its own. The app role may add a form but never change
or remove one, so what a declaration asks stays what it was sent with; and, as 0032 keeps its
other columns, a trigger keeps its key. Declarations made before keep their own copy
(``template_snapshot``, set on no later row): exactly one of the two is set.
"""

from alembic import op

from app.db.ddl import force_rls

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

STATEMENTS = [
    # The key is the database's own hash of the form, so no form is ever kept under another's
    # key: one planted there first would be what every later declaration of it asked. Of its
    # text as UTF-8, whatever the session: jsonb_send writes it in the client's encoding, so
    # a form planted from a LATIN1 session, re-encoded, took the key of the real one.
    """create function declaration_form_key(p_form jsonb) returns bytea
    language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp
    as $$ select sha256(convert_to(p_form::text, 'UTF8')) $$""",
    """create table declaration_forms (
        firm_id uuid not null references firms (id),
        snapshot jsonb not null check (jsonb_typeof(snapshot) = 'object'),
        sha256 bytea not null generated always as (declaration_form_key(snapshot)) stored,
        created_at timestamptz not null default now(),
        primary key (firm_id, sha256)
    )""",
    *force_rls("declaration_forms"),
    "grant select, insert on declaration_forms to coverproof_app",
    "alter table declarations alter column template_snapshot drop not null",
    "alter table declarations add column form_key bytea",
    "alter table declarations add constraint declarations_form_fkey "
    "foreign key (firm_id, form_key) references declaration_forms (firm_id, sha256)",
    "alter table declarations add constraint declarations_one_form "
    "check (num_nonnulls(template_snapshot, form_key) = 1)",
    # 0032's rule for the hash as well, in a function of its own.
    """create function declarations_keep_their_form() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if current_user = 'coverproof_owner'
           or (select rolsuper from pg_roles where rolname = current_user) then
            return new;
        end if;
        if new.form_key is distinct from old.form_key then
            raise exception 'declaration % keeps the form, recipient and dates it was made with',
                old.id using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end $$""",
    "create trigger declarations_keep_their_form before update of form_key on declarations "
    "for each row execute function declarations_keep_their_form()",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
