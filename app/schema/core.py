"""Root fields of the firm, the viewer, sign-in, sessions and members."""

from __future__ import annotations

import strawberry

from app.resolvers import account, auth, firms, viewer
from app.schema.access import PUBLIC
from app.schema.auth import (
    FirmMembership,
    Invitation,
    MailSentPayload,
    Member,
    MemberRoleChangePayload,
    OkPayload,
    SessionInfo,
    SignInPayload,
)
from app.schema.firms import Firm, FirmUpdatePayload
from app.schema.viewer import Viewer


@strawberry.type
class CoreQuery:
    viewer: Viewer | None = strawberry.field(
        resolver=viewer.viewer,
        metadata=PUBLIC,
        description="The signed-in user, their role and active firm; null when signed out.",
    )
    firm: Firm = strawberry.field(resolver=firms.firm, description="The active firm.")
    sessions: list[SessionInfo] = strawberry.field(
        resolver=account.sessions, description="Your live sessions in this firm, on every device."
    )
    my_firms: list[FirmMembership] = strawberry.field(
        resolver=account.my_firms, description="Every firm you belong to."
    )
    members: list[Member] = strawberry.field(
        resolver=account.firm_members, description="The active firm's members."
    )
    invitations: list[Invitation] = strawberry.field(
        resolver=account.invitations,
        description="The active firm's invitations not yet accepted, withdrawn or expired "
        "(admins).",
    )


# Said of each flow that signs in by an emailed link.
SWITCHING = (
    "In a browser signed in to another account, refused SIGNED_IN_AS_ANOTHER (the link not "
    "spent) unless switchAccount is true."
)


@strawberry.type
class CoreMutation:
    update_firm: FirmUpdatePayload = strawberry.mutation(
        resolver=firms.update_firm, description="Change the firm's details (owners and admins)."
    )
    sign_up: MailSentPayload = strawberry.mutation(
        resolver=auth.sign_up,
        metadata=PUBLIC,
        description="Create a user and their firm; a verification email follows.",
    )
    verify_email: SignInPayload = strawberry.mutation(
        resolver=auth.verify_email,
        metadata=PUBLIC,
        description="Confirm the address; signs in. " + SWITCHING,
    )
    resend_verification: MailSentPayload = strawberry.mutation(
        resolver=auth.resend_verification, metadata=PUBLIC
    )
    request_magic_link: MailSentPayload = strawberry.mutation(
        resolver=auth.request_magic_link, metadata=PUBLIC
    )
    sign_in_with_magic_link: SignInPayload = strawberry.mutation(
        resolver=auth.sign_in_with_magic_link, metadata=PUBLIC, description=SWITCHING
    )
    sign_in_with_password: SignInPayload = strawberry.mutation(
        resolver=auth.sign_in_with_password, metadata=PUBLIC
    )
    request_password_reset: MailSentPayload = strawberry.mutation(
        resolver=auth.request_password_reset, metadata=PUBLIC
    )
    reset_password: OkPayload = strawberry.mutation(
        resolver=auth.reset_password,
        metadata=PUBLIC,
        description="Set a new password; every session of the user is signed out, and every "
        "unused link that signs them in is spent.",
    )
    sign_out: OkPayload = strawberry.mutation(resolver=account.sign_out, metadata=PUBLIC)
    sign_out_everywhere: OkPayload = strawberry.mutation(
        resolver=account.sign_out_everywhere,
        description="End every session of yours, on every device and in every firm, and spend "
        "every unused link that signs you in.",
    )
    revoke_session: OkPayload = strawberry.mutation(resolver=account.revoke_session)
    switch_firm: SignInPayload = strawberry.mutation(
        resolver=account.switch_firm, description="Re-issue the session for another of your firms."
    )
    invite_member: OkPayload = strawberry.mutation(
        resolver=account.invite_member,
        description="Email an invitation to join the firm (admins; only owners invite owners), "
        "to an address not already a member's.",
    )
    accept_invitation: SignInPayload = strawberry.mutation(
        resolver=account.accept_invitation,
        metadata=PUBLIC,
        description=SWITCHING.replace("another account,", "another account or firm,"),
    )
    change_member_role: MemberRoleChangePayload = strawberry.mutation(
        resolver=account.change_member_role,
        description="Change a member's role (admins; only owners make or change owners). Below "
        "admin, the invitations they sent are withdrawn and the API keys they made revoked.",
    )
    remove_member: OkPayload = strawberry.mutation(
        resolver=account.remove_member,
        description="Remove a member (admins; only owners remove owners): their sessions in the "
        "firm end, their pending invitations (sent by them or to them) are withdrawn, and the "
        "API keys they made are revoked (they saw each key's secret).",
    )
    revoke_invitation: OkPayload = strawberry.mutation(
        resolver=account.revoke_invitation,
        description="Withdraw a pending invitation: its link stops working (admins).",
    )
