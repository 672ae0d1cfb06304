"""A ready pack names the exact version of its stored object, where the store keeps versions.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# In a bucket with versioning on, the object a ready pack names can still be overwritten: its
# download would then fail the recorded SHA-256 although the original is still kept. The
# version the upload created is recorded, and downloads read that version. Set in the update
# that makes the pack ready, so 0012 keeps it from changing afterwards.
STATEMENTS = [
    "alter table evidence_packs add column storage_version text "
    "check (char_length(storage_version) <= 1024)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
