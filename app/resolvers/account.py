"""Resolvers for the signed-in user's sessions, firms and the firm's members."""

from __future__ import annotations

import uuid
from datetime import timedelta

from app.auth import account, members
from app.auth.actor import Role
from app.errors import NotFound
from app.resolvers.auth import signed_in
from app.schema.auth import (
    FirmMembership,
    Invitation,
    InviteMemberInput,
    Member,
    MemberRoleChangeInput,
    MemberRoleChangePayload,
    OkPayload,
    SessionInfo,
    SignInPayload,
)
from app.schema.context import Info


async def sign_out(info: Info) -> OkPayload:
    await info.context.run_signed_in(account.sign_out)
    info.context.clear_session_cookie = True
    return OkPayload(ok=True)


async def sign_out_everywhere(info: Info) -> OkPayload:
    await info.context.run(account.sign_out_everywhere)
    info.context.clear_session_cookie = True
    return OkPayload(ok=True)


async def sessions(info: Info) -> list[SessionInfo]:
    idle = info.context.settings.session_idle
    current = info.context.actor.session_id
    return [
        SessionInfo(
            id=s.id,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == current,
        )
        for s in await info.context.run(account.list_sessions, idle)
    ]


async def revoke_session(info: Info, id: uuid.UUID) -> OkPayload:
    await info.context.run(account.revoke_session, id)
    return OkPayload(ok=True)


async def my_firms(info: Info) -> list[FirmMembership]:
    active = info.context.actor.firm_id
    return [
        FirmMembership(
            firm_id=row.firm_id,
            firm_name=row.firm_name,
            role=Role(row.role),
            active=row.firm_id == active,
        )
        for row in await info.context.run(account.my_firms)
    ]


async def switch_firm(info: Info, firm_id: uuid.UUID) -> SignInPayload:
    context = info.context
    lifetime = timedelta(hours=context.settings.session_lifetime_hours)
    cookie = await context.run(account.switch_firm, firm_id, lifetime, context.user_agent)
    membership = next((f for f in await my_firms(info) if f.firm_id == firm_id), None)
    if membership is None:  # removed from it meanwhile: nothing of the switch stands
        raise NotFound("Firm not found.")
    context.new_session_cookie = cookie
    return SignInPayload(
        user_id=context.actor.id, firm_id=firm_id, role=membership.role, email_verified=True
    )


async def firm_members(info: Info) -> list[Member]:
    return [
        Member(
            user_id=user.id,
            email=user.email,
            email_verified=user.email_verified_at is not None,
            role=Role(role),
        )
        for user, role in await info.context.run(members.list_members)
    ]


async def invite_member(info: Info, input: InviteMemberInput) -> OkPayload:
    from app.auth.schemas import Invitation  # noqa: PLC0415

    data = Invitation(email=input.email, idempotency_key=input.idempotency_key)
    await info.context.run(
        members.invite_member,
        info.context.auth_env,
        data.email,
        input.role,
        data.idempotency_key,
    )
    return OkPayload(ok=True)


async def accept_invitation(info: Info, token: str, switch_account: bool = False) -> SignInPayload:
    result = await info.context.run_public(members.accept_invitation, token)
    return signed_in(info.context, result, switch=switch_account, firm_too=True)


async def change_member_role(info: Info, input: MemberRoleChangeInput) -> MemberRoleChangePayload:
    await info.context.run(members.change_member_role, input.user_id, input.role)
    member = next(m for m in await firm_members(info) if m.user_id == input.user_id)
    return MemberRoleChangePayload(member=member)


async def remove_member(info: Info, user_id: uuid.UUID) -> OkPayload:
    await info.context.run(members.remove_member, user_id)
    return OkPayload(ok=True)


async def invitations(info: Info) -> list[Invitation]:
    return [
        Invitation(
            id=found.id,
            email=found.email or "",
            role=Role(found.role or Role.MEMBER),  # an invitation always names one
            invited_by=found.created_by,
            created_at=found.created_at,
            expires_at=found.expires_at,
        )
        for found in await info.context.run(members.list_invitations)
    ]


async def revoke_invitation(info: Info, id: uuid.UUID) -> OkPayload:
    await info.context.run(members.revoke_invitation, id)
    return OkPayload(ok=True)
