"""A declaration moves only as the app moves it, and only its live link submits it, in the
database itself.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The app creates declarations as drafts; sends a draft (or revokes it); marks a sent one
# opened; revokes a sent or opened one; and only a recipient's submission, through the live
# link, makes one submitted (app/declarations/). This makes those moves the only ones any code
# the app role runs can make, a bug included: no declaration created already answered or sent,
# no revoked one revived, no answers on one not submitted, and a submission only from sent or
# opened, on the same link, unexpired when the submission was made, with its answers, its
# accepted attestation, its receipt and the time it is made (within five minutes of the
# database's clock). What it cannot tell is whether the link's secret was presented (the
# database holds only its hash): code that sent a declaration and submitted it in the same
# transaction would pass. The owner and superusers are not held to it: migrations, and imports
# of a firm's earlier records, write what already happened. (0012 keeps a submitted
# declaration from changing afterwards.)
MOVES = (
    "('draft', 'sent'), ('draft', 'revoked'), ('sent', 'opened'), ('sent', 'revoked'), "
    "('opened', 'revoked'), ('sent', 'submitted'), ('opened', 'submitted')"
)
ANSWERED = (
    "new.answers is not null or new.attestation_accepted is not null "
    "or new.signature_name is not null or new.submitted_at is not null "
    "or new.submitted_ip is not null or new.submitted_user_agent is not null "
    "or new.response_sha256 is not null"
)

STATEMENTS = [
    f"""create function declarations_move_as_the_app_moves_them() returns trigger
    language plpgsql set search_path = pg_catalog, public, pg_temp as $$
    begin
        if current_user = 'coverproof_owner'
           or (select rolsuper from pg_roles where rolname = current_user) then
            return new;
        end if;
        if tg_op = 'INSERT' then
            if new.status <> 'draft' or new.token_hash is not null or ({ANSWERED}) then
                raise exception 'declaration % must be created as a draft', new.id
                    using errcode = 'integrity_constraint_violation';
            end if;
            return new;
        end if;
        if old.status = 'submitted' then
            return new;  -- final: 0012's trigger refuses any change
        end if;
        if new.status <> old.status and (old.status, new.status) not in ({MOVES}) then
            raise exception 'declaration % cannot go from % to %', new.id, old.status, new.status
                using errcode = 'integrity_constraint_violation';
        end if;
        if new.status = 'submitted' then
            if old.token_hash is null or new.token_hash is distinct from old.token_hash
               or new.token_expires_at is distinct from old.token_expires_at
               or new.answers is null or new.attestation_accepted is not true
               or new.signature_name is null or new.response_sha256 is null
               or new.submitted_at is null
               -- The link alive when the submission was made, by the app's clock (whose
               -- conditional update checked the same), and that clock within five minutes
               -- of the database's: no backdated or postdated submission.
               or old.token_expires_at is null or old.token_expires_at <= new.submitted_at
               or abs(extract(epoch from new.submitted_at - clock_timestamp())) > 300 then
                raise exception 'declaration % can be submitted only through its live link',
                    new.id using errcode = 'integrity_constraint_violation';
            end if;
            return new;
        end if;
        if {ANSWERED} then
            raise exception 'declaration % can hold answers only once submitted', new.id
                using errcode = 'integrity_constraint_violation';
        end if;
        if new.token_hash is distinct from old.token_hash
           and not (new.status in ('sent', 'opened') and new.token_hash is not null
                    or new.status = 'revoked' and new.token_hash is null) then
            raise exception 'declaration % has a link only while sent or opened', new.id
                using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end $$""",
    "create trigger declarations_move_as_the_app_moves_them "
    "before insert or update on declarations "
    "for each row execute function declarations_move_as_the_app_moves_them()",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("forward-only")
