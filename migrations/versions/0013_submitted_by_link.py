"""Only a declaration's live link submits it, in the database itself.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The app creates declarations as drafts, and only a recipient's submission, through the live
# link, makes one submitted (app/declarations/public.py). This makes that true of any code the
# app role runs, a bug included: it cannot create a declaration already answered, nor answer
# one that was never sent, whose link was revoked, replaced or has expired, and a submission
# must carry its answers, its accepted attestation and its receipt. The owner is not held to
# it: migrations, and an import of a firm's earlier records, write what already happened.
# (0012 keeps a submitted declaration from changing afterwards.)
STATEMENTS = [
    """create function declarations_submitted_by_their_link() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if tg_op = 'INSERT' then
            if (new.status <> 'draft' or new.submitted_at is not null
                or new.answers is not null or new.response_sha256 is not null)
               and not pg_has_role(current_user, 'coverproof_owner', 'member') then
                raise exception 'declaration % must be created as a draft', new.id
                    using errcode = 'integrity_constraint_violation';
            end if;
            return new;
        end if;
        if new.status = 'submitted' and old.status <> 'submitted'
           and (old.status not in ('sent', 'opened')
                or old.token_hash is null or new.token_hash is distinct from old.token_hash
                or old.token_expires_at is null or old.token_expires_at <= now()
                or new.submitted_at is null or new.answers is null
                or new.response_sha256 is null or new.attestation_accepted is not true)
           and not pg_has_role(current_user, 'coverproof_owner', 'member') then
            raise exception 'declaration % can be submitted only through its live link', new.id
                using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end $$""",
    "create trigger declarations_submitted_by_their_link before insert or update on declarations "
    "for each row execute function declarations_submitted_by_their_link()",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
