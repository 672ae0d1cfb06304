"""Which firm an invitation is to, before it is redeemed: for taking the firm's chain lock first.

Revision ID: 0031
Revises: 0030

Accepting an invitation took its token's row (redeeming it), then the firm's chain lock (its
audit entry), while an admin withdrawing that invitation, or removing the member who sent it,
takes the chain lock, then the row: the two could each wait for the other (a deadlock, one
answered 500). Every other flow that changes a firm's members or invitations takes the chain
lock first; accepting now does too, knowing the firm from this lookup. It names the firm of
a pending invitation only (a spent link queues on no firm's lock). Its caller holds the
token, so it tells them nothing the link does not.
"""

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

APP = "coverproof_app"
LOOKUP = """create function auth_invitation_firm(p_token_hash bytea) returns uuid
language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
    select firm_id from auth_tokens
    where token_hash = p_token_hash and purpose = 'invitation'
      and used_at is null and expires_at > now()
$$"""


def upgrade() -> None:
    op.execute(LOOKUP)
    op.execute("revoke all on function auth_invitation_firm(bytea) from public")
    op.execute(f"grant execute on function auth_invitation_firm(bytea) to {APP}")


def downgrade() -> None:
    raise NotImplementedError("forward-only")
