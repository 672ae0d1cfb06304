"""The outbox under row-level security: the sender's alone to read.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SENDER = "current_setting('app.mail_sender', true) = 'on'"

STATEMENTS = [
    # Its rows hold firm data (a recipient's address; a subject naming the firm and the
    # template) but no firm_id: a sign-up's mail precedes any firm. So no tenant reads it. Any
    # transaction may queue mail in its own work; only the sender's transaction
    # (app.db.tenant.mail_sender_transaction) sees the rows, to deliver and mark them, and a
    # code path that forgot its tenant sees nothing, as on every firm table.
    "alter table mail_outbox enable row level security",
    "alter table mail_outbox force row level security",
    "create policy mail_enqueue on mail_outbox for insert with check (true)",
    f"create policy mail_sender_reads on mail_outbox for select using ({SENDER})",
    f"create policy mail_sender_marks on mail_outbox for update using ({SENDER}) "
    f"with check ({SENDER})",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
