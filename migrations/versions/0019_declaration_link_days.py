"""A declaration keeps the link lifetime it was created with.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# createDeclaration's linkDays was checked and then dropped: a draft sent later, and every
# reminder and reissue, got the default lifetime. Kept on the row, it applies to each link the
# declaration is sent; null for the default. 1 to 90, as the input allows.
STATEMENTS = [
    "alter table declarations add column link_days integer "
    "constraint declarations_link_days_range check (link_days between 1 and 90)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
