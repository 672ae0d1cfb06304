"""Find a declaration's ``declaration.submitted`` audit entry by the declaration.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# An evidence pack checks each submitted response against the SHA-256 its submission's audit
# entry recorded. Partial, so the other appends (every mutation's) do not maintain it.
STATEMENT = (
    "create index audit_log_submitted on audit_log (firm_id, target_id) "
    "where action = 'declaration.submitted'"
)


def upgrade() -> None:
    op.execute(STATEMENT)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
