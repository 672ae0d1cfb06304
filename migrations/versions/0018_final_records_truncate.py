"""A submitted declaration and a ready evidence pack cannot be truncated away either.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# 0012's triggers refuse to update or delete a final row, but TRUNCATE fires no row trigger:
# the tables' owner (which the app role is not; it holds no TRUNCATE) could have emptied both
# tables in one statement, or through a TRUNCATE of firms with CASCADE. A statement trigger
# refuses it, as the audit tables' do, unless the owner first disables it.
STATEMENTS = [
    """create function final_records_not_truncated() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        raise exception '% holds final records and cannot be truncated', tg_table_name
            using errcode = 'integrity_constraint_violation';
    end $$""",
    "create trigger declarations_not_truncated before truncate on declarations "
    "for each statement execute function final_records_not_truncated()",
    "create trigger evidence_packs_not_truncated before truncate on evidence_packs "
    "for each statement execute function final_records_not_truncated()",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
