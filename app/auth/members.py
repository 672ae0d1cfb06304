"""Firm membership: invite, accept, change role, remove. At least one owner always remains."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import idempotency
from app.audit import chain
from app.audit.actions import Action
from app.auth import mails, sessions, tokens
from app.auth.actor import Actor, Role
from app.auth.env import AuthEnv
from app.auth.service import (
    SignedIn,
    limit_link,
    link_ttl,
    prove_address,
    proved_owner,
    record_refusal,
    redeem_link,
    start_session,
    user_actor,
)
from app.auth.tokens import Purpose
from app.db import calls
from app.db.models import ApiKey, AuthToken, Firm, Membership, User
from app.db.tenant import GiveWay, bind_tenant
from app.errors import BadUserInput, Forbidden, NotFound, TokenUsed, field_error


async def list_members(session: AsyncSession, actor: Actor) -> list[tuple[User, str]]:
    rows = await session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.firm_id == actor.firm_id)
        .order_by(User.email)
    )
    return [(user, role) for user, role in rows.all()]


async def invite_member(
    session: AsyncSession,
    actor: Actor,
    env: AuthEnv,
    email: str,
    role: Role,
    idempotency_key: str | None = None,
) -> None:
    """Email an invitation (admins; only owners invite owners). A retry with the same
    idempotency key sends nothing more."""
    actor.require(Role.OWNER if role is Role.OWNER else Role.ADMIN)
    # Under the firm's lock, with the role read again: an invitation sent while its sender was
    # being removed or demoted would otherwise commit after the withdrawal that missed it.
    await chain.lock_firm(session, actor.firm_id)
    actor = await _acting_member(session, actor)
    actor.require(Role.OWNER if role is Role.OWNER else Role.ADMIN)
    invited = {"email": email, "role": role.value}
    first = await idempotency.replay(session, actor, idempotency_key, "inviteMember", invited)
    if first is not None:
        return
    # An invitation to a member could do nothing, and accepting it would take the firm's chain
    # lock before the member's own row, which their sign-in takes the other way round.
    member = await session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.firm_id == actor.firm_id, func.lower(User.email) == email.lower())
    )
    if member is not None:
        raise field_error("email", "This address is already a member of the firm.")
    await env.limit_mail(email)
    ttl = link_ttl(env, Purpose.INVITATION)
    invitation_id = uuid.uuid4()
    token = await tokens.issue(
        session,
        env.secret_key,
        Purpose.INVITATION,
        ttl,
        firm_id=actor.firm_id,
        email=email,
        role=role,
        created_by=actor.id,
        token_id=invitation_id,
    )
    firm = await session.get(Firm, actor.firm_id)
    link = mails.link(env.settings.links_url, "invitation", token)
    mail = mails.invitation(link, firm.name if firm else "a firm", role.value)
    await env.send(session, email, mail.subject, mail.text, mail.html)
    await idempotency.remember(session, actor, idempotency_key, "inviteMember", invited, {})
    await chain.record(
        session,
        actor,
        Action.MEMBER_INVITED,
        "invitation",
        invitation_id,
        {"email": email, "role": role.value},
    )


def _pending(firm_id: uuid.UUID) -> Any:
    """The firm's invitations not yet accepted, withdrawn or expired."""
    return (
        AuthToken.purpose == Purpose.INVITATION.value,
        AuthToken.firm_id == firm_id,
        AuthToken.used_at.is_(None),
        AuthToken.expires_at > func.now(),
    )


async def list_invitations(session: AsyncSession, actor: Actor) -> list[AuthToken]:
    """The firm's pending invitations, newest first (admins)."""
    actor.require(Role.ADMIN)
    query = select(AuthToken).where(*_pending(actor.firm_id))
    return list((await session.execute(query.order_by(AuthToken.created_at.desc()))).scalars())


async def revoke_invitation(session: AsyncSession, actor: Actor, invitation_id: uuid.UUID) -> None:
    """Withdraw a pending invitation: its link stops working (admins; an owner's, owners)."""
    actor.require(Role.ADMIN)
    await chain.lock_firm(session, actor.firm_id)
    actor = await _acting_member(session, actor)
    actor.require(Role.ADMIN)
    query = select(AuthToken).where(AuthToken.id == invitation_id, *_pending(actor.firm_id))
    found = (await session.execute(query.with_for_update(key_share=True))).scalar_one_or_none()
    if found is None:
        raise NotFound("Invitation not found.")
    if found.role == Role.OWNER.value:
        actor.require(Role.OWNER)
    await _withdraw_invitations(session, actor.firm_id, AuthToken.id == invitation_id)
    details = {"email": found.email, "role": found.role}
    await chain.record(
        session, actor, Action.INVITATION_REVOKED, "invitation", invitation_id, details
    )


async def accept_invitation(session: AsyncSession, env: AuthEnv, token: str) -> SignedIn:
    """Join the firm (creating a password-less user if needed) and sign in to it; the link
    came to the invited address, so it also proves that address."""
    # The firm's chain lock before the invitation's row, as every flow that changes a firm's
    # members or invitations takes them: withdrawing it, or removing its sender, meanwhile
    # took the lock and waited for the row this held (a deadlock). Counted first, so a link
    # refused by its limits, or spent (the lookup names pending invitations only), queues on
    # no firm's lock.
    await limit_link(env, Purpose.INVITATION, token)
    ttl = link_ttl(env, Purpose.INVITATION)
    firm_id = await tokens.invitation_firm(session, env.secret_key, token, ttl)
    if firm_id is not None:
        await chain.lock_firm(session, firm_id)
    found = await redeem_link(session, env, Purpose.INVITATION, token, limited=True)
    existing = await calls.user_by_email(session, found.email)
    user_id = existing.user_id if existing else uuid.uuid4()
    now = datetime.now(UTC)
    await bind_tenant(session, found.firm_id, user_id)
    if existing is None:
        try:
            await session.execute(
                insert(User).values(
                    id=user_id,
                    email=found.email,
                    email_verified_at=now,
                    created_at=now,
                )
            )
        except IntegrityError as error:
            # The address signed up meanwhile, uncommitted when it was looked for (this waited
            # for that to commit): run again, this accepts for the account it made.
            raise GiveWay from error
    else:
        # Before the user's row, which their own sign-in takes before this firm's lock: one
        # already a member (invited before invite_member refused it) holds no such link.
        if await session.get(Membership, (found.firm_id, user_id)) is not None:
            raise TokenUsed().on_record(
                lambda fresh: record_refusal(fresh, env, Purpose.INVITATION, TokenUsed.code, None)
            )
        if await tokens.invited_before_spent(session, env.secret_key, token, ttl, user_id):
            # As a link the user's reset spent; rolled back, so the firm's invitation stays as
            # it was (the firm learns nothing of the user), and recorded on the platform chain.
            raise TokenUsed().on_record(
                lambda fresh: record_refusal(fresh, env, Purpose.INVITATION, TokenUsed.code, None)
            )
        await prove_address(session, user_id, clear_password=True)
    # After the user's row, as every flow takes the two (a sign-in holds that row, then this).
    await proved_owner(session, env, found.email)
    # Not a member yet: one who already is was refused above, under the firm's lock.
    role = found.role
    await session.execute(
        insert(Membership).values(
            firm_id=found.firm_id, user_id=user_id, role=role.value, created_at=now
        )
    )
    # The firm's other invitations to the address would sign in as this one did, for days.
    withdrawn = await _withdraw_invitations(session, found.firm_id, AuthToken.email == found.email)
    actor = user_actor(env, user_id, found.firm_id, role)
    details = {"role": role.value, "invitations": withdrawn}
    await chain.record(session, actor, Action.MEMBER_JOINED, "user", user_id, details)
    return await start_session(session, env, actor)


async def _acting_member(session: AsyncSession, actor: Actor) -> Actor:
    """The acting member with the role they hold now, read under the firm's lock (taken first):
    the role their session was looked up with may have been changed while they waited on it."""
    mine = await session.get(Membership, (actor.firm_id, actor.id), populate_existing=True)
    if mine is None:
        raise Forbidden()
    return dataclasses.replace(actor, role=Role(mine.role))


async def _target(session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> Membership:
    # Read afresh: a role loaded earlier in this request may be stale, and decides who may act.
    membership = await session.get(
        Membership,
        (actor.firm_id, user_id),
        with_for_update={"key_share": True},
        populate_existing=True,
    )
    if membership is None:
        raise NotFound("Member not found.")
    return membership


async def _keep_an_owner(session: AsyncSession, actor: Actor, leaving: Membership) -> None:
    """Lock the firm's owners, then refuse to remove or demote the last one."""
    if leaving.role != Role.OWNER.value:
        return
    owners = await session.execute(
        select(func.count()).select_from(
            select(Membership.user_id)
            .where(Membership.firm_id == actor.firm_id, Membership.role == Role.OWNER.value)
            .with_for_update(key_share=True)
            .subquery()
        )
    )
    if owners.scalar_one() <= 1:
        raise BadUserInput("A firm keeps at least one owner.")


async def change_member_role(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, role: Role
) -> Membership:
    """Admins change members' roles; only owners touch owners."""
    actor.require(Role.ADMIN)
    await _hold_keys_made_by(session, user_id)
    await chain.lock_firm(session, actor.firm_id)
    actor = await _acting_member(session, actor)
    actor.require(Role.ADMIN)
    target = await _target(session, actor, user_id)
    if role is Role.OWNER or target.role == Role.OWNER.value:
        actor.require(Role.OWNER)
    old = target.role
    details: dict[str, Any] = {"from": old, "to": role.value}
    if old != role.value:
        await _keep_an_owner(session, actor, target)
        target.role = role.value
        await session.flush()
        # What they sent that they may no longer send goes, or it would bring them back: below
        # admin, every invitation; an owner made admin, those that make owners.
        sent = AuthToken.created_by == user_id
        if Role(old).rank >= Role.ADMIN.rank > role.rank:
            details["invitations"] = await _withdraw_invitations(session, actor.firm_id, sent)
            details["api_keys"] = await _revoke_keys_made_by(session, user_id)
        elif old == Role.OWNER.value:
            owners = sent & (AuthToken.role == Role.OWNER.value)
            details["invitations"] = await _withdraw_invitations(session, actor.firm_id, owners)
    # One who changed their own role holds the new one now: their act, checked above.
    await chain.record(
        session,
        actor,
        Action.MEMBER_ROLE_CHANGED,
        "user",
        user_id,
        details,
        as_member=user_id != actor.id,
    )
    return target


async def _hold_keys_made_by(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Lock the live keys ``user_id`` made (the bound firm's) before the firm's chain lock, as
    a key's request takes them (its row marked used, then the lock to record): taken the other
    way round, a removal revoking them deadlocked with the key's first use."""
    live = select(ApiKey.id).where(*_live_keys_made_by(user_id)).order_by(ApiKey.id)
    await session.execute(live.with_for_update(key_share=True))


async def _revoke_keys_made_by(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Revoke the firm's live API keys ``user_id`` made (RLS: the bound firm's); how many. A
    key acts for the firm with its scopes: an admin about to leave, or to lose the right to
    make one, could otherwise make one and keep its access."""
    revoked = await session.execute(
        update(ApiKey).where(*_live_keys_made_by(user_id)).values(revoked_at=datetime.now(UTC))
    )
    return int(revoked.rowcount)  # type: ignore[attr-defined]


def _live_keys_made_by(user_id: uuid.UUID) -> tuple[Any, ...]:
    return ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None)


async def _withdraw_invitations(session: AsyncSession, firm_id: uuid.UUID, which: Any) -> int:
    """Spend the firm's pending invitations that ``which`` picks; how many there were."""
    withdrawn = await session.execute(
        update(AuthToken).where(*_pending(firm_id), which).values(used_at=func.now())
    )
    return int(withdrawn.rowcount)  # type: ignore[attr-defined]


async def remove_member(session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> None:
    """Remove a member and end their sessions for this firm (``details.sessions`` counts them):
    re-invited later, they sign in afresh."""
    actor.require(Role.ADMIN)
    # Their sessions' rows before the firm's chain lock, as their own requests take them (a
    # session marked seen, or ended, then the lock to record it): a removal holding the lock
    # while it waited for those rows deadlocked with them, and stalled the firm's writes
    # behind their slowest request.
    await calls.hold_member_sessions(session, user_id)
    await _hold_keys_made_by(session, user_id)
    await chain.lock_firm(session, actor.firm_id)
    actor = await _acting_member(session, actor)
    actor.require(Role.ADMIN)
    target = await _target(session, actor, user_id)
    if target.role == Role.OWNER.value:
        actor.require(Role.OWNER)
    await _keep_an_owner(session, actor, target)
    email = await session.scalar(select(User.email).where(User.id == user_id))  # while a member
    await session.execute(
        delete(Membership).where(Membership.firm_id == actor.firm_id, Membership.user_id == user_id)
    )
    # Ended, not only unusable while they are not a member: a re-invitation must not revive them.
    # An admin leaving ends their own, which RLS lets them (and the owner's function, which
    # acts for the firm's admins, no longer would: they are not one now).
    if user_id == actor.id:
        ended = await sessions.revoke_in_firm(session, user_id, actor.firm_id)
    else:
        ended = await calls.end_member_sessions(session, user_id)
    # Their pending invitations go too, those they sent and those to their address: an admin
    # about to be removed could otherwise invite an address of theirs and come back.
    sent_or_to_them = or_(
        AuthToken.created_by == user_id, func.lower(AuthToken.email) == func.lower(email)
    )
    withdrawn = await _withdraw_invitations(session, actor.firm_id, sent_or_to_them)
    details = {"role": target.role, "sessions": ended, "invitations": withdrawn}
    if Role(target.role).rank >= Role.ADMIN.rank:
        details["api_keys"] = await _revoke_keys_made_by(session, user_id)
    # One who removed themselves is no longer a member now: their act, checked above.
    await chain.record(
        session,
        actor,
        Action.MEMBER_REMOVED,
        "user",
        user_id,
        details,
        as_member=user_id != actor.id,
    )
