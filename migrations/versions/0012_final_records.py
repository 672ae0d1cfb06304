"""A submitted declaration and a ready evidence pack are final, in the database itself.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# No code path changes either once it is final; these make that true of any code the app role
# runs, a bug included, and of the owner's statements unless it first disables the trigger.
# A submitted declaration's answers, signature and response hash are the recipient's record
# (its hash is chained into the audit trail; evidence packs refuse a response that no longer
# matches its recorded hash); a ready pack's storage key and SHA-256 are what its download is
# checked against. Retrying a failed pack still moves it on.
STATEMENTS = [
    """create function declarations_submitted_are_final() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if old.status = 'submitted' then
            raise exception 'declaration % is submitted and cannot change', old.id
                using errcode = 'integrity_constraint_violation';
        end if;
        if tg_op = 'DELETE' then
            return old;  -- not null: a BEFORE trigger that returns null skips the row
        end if;
        return new;
    end $$""",
    "create trigger declarations_submitted_are_final before update or delete on declarations "
    "for each row execute function declarations_submitted_are_final()",
    """create function evidence_packs_ready_are_final() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if old.status = 'ready' then
            raise exception 'evidence pack % is ready and cannot change', old.id
                using errcode = 'integrity_constraint_violation';
        end if;
        if tg_op = 'DELETE' then
            return old;  -- not null: a BEFORE trigger that returns null skips the row
        end if;
        return new;
    end $$""",
    "create trigger evidence_packs_ready_are_final before update or delete on evidence_packs "
    "for each row execute function evidence_packs_ready_are_final()",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
