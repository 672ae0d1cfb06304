"""The tables' owner may not update, delete or truncate the audit trail either.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The app role was only ever granted select and insert; the owner (the migrations' role, which
# the CLI also connects as) held every privilege on its own tables, stopped only by the
# append-only triggers. Revoked from it too, changing an entry now takes two deliberate steps
# as the owner (granting the privilege back, then disabling the trigger) or a superuser; and
# the hash chain and its signed checkpoints still show any change.
STATEMENTS = [
    "revoke update, delete, truncate on audit_log, audit_checkpoints from coverproof_owner",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
