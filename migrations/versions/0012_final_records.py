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


def _final(table: str, status: str, noun: str) -> list[str]:
    """A trigger refusing any update or delete of ``table``'s rows whose status is ``status``."""
    name = f"{table}_{status}_are_final"
    return [
        f"""create function {name}() returns trigger
        language plpgsql set search_path = pg_catalog, public, pg_temp as $$
        begin
            if old.status = '{status}' then
                raise exception '{noun} % is {status} and cannot change', old.id
                    using errcode = 'integrity_constraint_violation';
            end if;
            if tg_op = 'DELETE' then
                return old;  -- not null: a BEFORE trigger that returns null skips the row
            end if;
            return new;
        end $$""",
        f"create trigger {name} before update or delete on {table} "
        f"for each row execute function {name}()",
    ]


STATEMENTS = [
    *_final("declarations", "submitted", "declaration"),
    *_final("evidence_packs", "ready", "evidence pack"),
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
