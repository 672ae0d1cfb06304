"""When a user last spent their links: an invitation sent before then no longer signs them in.

Revision ID: 0029
Revises: 0028

Accepting an invitation signs in as the invited address's user, as a magic link does, for the
invitation's seven days: a link someone took from the mailbox kept that power after the user
reset the password or signed out everywhere, which spend the user's own links. Invitations
are rows of the inviting firms; spending them there would show a firm that the address it
invited is registered, and when its user reset the password. So the user's row keeps when
their links were last spent, and an invitation issued before then is refused to an existing
user (TOKEN_USED), leaving the firm's row as it was.
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

APP = "coverproof_app"
STATEMENTS = [
    "alter table users add column links_spent_at timestamptz",
    f"grant update (links_spent_at) on users to {APP}",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("alter table users drop column links_spent_at")
