"""Sign-up, verification, and sign-in by password or magic link.

Every flow starts before the firm is known: a narrow lookup (``auth_user_by_email`` or
``auth_redeem_token``) finds the user and their firm, then the transaction is bound to that
tenant and the rest runs under RLS. Answers never reveal whether an address is registered.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.audit.actions import Action
from app.auth import mails, passwords, sessions, throttle, tokens
from app.auth.actor import Actor, ActorType, Role
from app.auth.env import AuthEnv
from app.auth.schemas import EmailOnly, PasswordSignIn, SignUp
from app.auth.tokens import Purpose
from app.db import calls
from app.db.models import Firm, Membership, User
from app.db.tenant import bind_tenant
from app.errors import AppError, Forbidden, InvalidCredentials, NotFound, RateLimited, TokenUsed
from app.ratelimit.policies import Policy

THROTTLE_AFTER_FAILURES = 100


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie value (never stored) and who it belongs to."""

    cookie: str
    actor: Actor
    email_verified: bool


def user_actor(env: AuthEnv, user_id: uuid.UUID, firm_id: uuid.UUID, role: Role) -> Actor:
    return Actor(ActorType.USER, user_id, firm_id, role, ip=env.ip)


async def get_viewer(session: AsyncSession, actor: Actor) -> tuple[User, Firm]:
    """The signed-in user and their active firm."""
    user = await session.get(User, actor.id)
    firm = await session.get(Firm, actor.firm_id)
    if user is None or firm is None:
        raise NotFound()
    return user, firm


def link_ttl(env: AuthEnv, purpose: Purpose) -> timedelta:
    """How long a link of ``purpose`` lives, as configured."""
    settings = env.settings
    return {
        Purpose.VERIFY_EMAIL: timedelta(hours=settings.verification_hours),
        Purpose.MAGIC_LINK: timedelta(minutes=settings.magic_link_minutes),
        Purpose.PASSWORD_RESET: timedelta(minutes=settings.password_reset_minutes),
        Purpose.INVITATION: timedelta(days=settings.invitation_days),
    }[purpose]


async def _issue_and_send(
    session: AsyncSession, env: AuthEnv, purpose: Purpose, user_id: uuid.UUID, to: str
) -> None:
    page, compose = {
        Purpose.VERIFY_EMAIL: ("verify-email", mails.verification),
        Purpose.MAGIC_LINK: ("magic-link", mails.magic_link),
        Purpose.PASSWORD_RESET: ("reset-password", mails.password_reset),
    }[purpose]
    ttl = link_ttl(env, purpose)
    token = await tokens.issue(session, env.secret_key, purpose, ttl, user_id=user_id)
    mail = compose(mails.link(env.settings.links_url, page, token))
    await env.send(session, to, mail.subject, mail.text, mail.html)


async def sign_up(session: AsyncSession, env: AuthEnv, data: SignUp) -> None:
    """Create the user, their firm (as owner) and send the verification email. An address
    already registered gets the same answer; its owner is told by email instead."""
    await env.limit(Policy.SIGN_UP_PER_IP, env.ip_key)
    if data.password is not None:
        await passwords.check_strength(data.password, email=data.email)
    # Counted once the request can send: a password refused sends nothing, and counted it left
    # the caller refused the mail of the sign-up that then succeeded.
    await env.limit_mail(data.email)
    # Hash even for a duplicate, so both answers take the same time.
    password_hash = await passwords.hash_password(data.password) if data.password else None
    firm_id, user_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    await bind_tenant(session, firm_id, user_id)
    try:
        async with session.begin_nested():
            await session.execute(
                insert(User).values(
                    id=user_id,
                    email=data.email,
                    password_hash=password_hash,
                    created_at=now,
                )
            )
    except IntegrityError:
        await _sign_up_duplicate(session, env, data.email)
        return
    await session.execute(
        insert(Firm).values(id=firm_id, name=data.firm_name, frn=data.frn, created_at=now)
    )
    await session.execute(
        insert(Membership).values(
            firm_id=firm_id, user_id=user_id, role=Role.OWNER.value, created_at=now
        )
    )
    await _issue_and_send(session, env, Purpose.VERIFY_EMAIL, user_id, data.email)
    actor = user_actor(env, user_id, firm_id, Role.OWNER)
    await chain.record(
        session, actor, Action.SIGNED_UP, "user", user_id, {"password": data.password is not None}
    )
    # A duplicate's is on the platform chain: a new one's too, naming nobody (see why in
    # _send_if_known).
    await chain.record_platform(session, Action.SIGNED_UP, ip=env.ip)


async def _sign_up_duplicate(session: AsyncSession, env: AuthEnv, email: str) -> None:
    mail = mails.sign_up_attempt(f"{env.settings.links_url}/")
    await env.send(session, email, mail.subject, mail.text, mail.html)
    await chain.record_platform(session, Action.SIGN_UP_DUPLICATE, ip=env.ip)


async def limit_link(env: AuthEnv, purpose: Purpose, token: str) -> None:
    """Each link is limited on its own and per caller IP, like every public token field: counted
    together, so a caller past its own limit uses up nothing of the link's."""
    await env.limiter.hit_all(
        (Policy.PUBLIC_TOKEN_PER_TOKEN, tokens.rate_key(env.secret_key, purpose, token)),
        (Policy.PUBLIC_TOKEN_PER_IP, env.ip_key),
    )


async def redeem_link(
    session: AsyncSession, env: AuthEnv, purpose: Purpose, token: str, *, limited: bool = False
) -> Any:
    """Check and consume a token; a refusal is audited (firm chain when known) after rollback.
    ``limited``: the caller has counted it already (``limit_link``)."""
    ttl = link_ttl(env, purpose)
    if not limited:
        await limit_link(env, purpose, token)
    try:
        token_hash = tokens.check(env.secret_key, purpose, token, ttl)
        return await tokens.redeem(session, purpose, token_hash)
    except tokens.RefusedToken as refused:
        error: AppError = refused.error
        known = refused.known
    except AppError as refused:
        error, known = refused, None
    code = error.code
    raise error.on_record(lambda fresh: record_refusal(fresh, env, purpose, code, known))


async def record_refusal(
    session: AsyncSession, env: AuthEnv, purpose: Purpose, code: str, known: Any
) -> None:
    """Audit a refused token without the token: in its firm's chain when the firm is known
    (within ``env.on_firm_record``'s bound), else in the platform's, naming the account if
    known."""
    details = {"purpose": purpose.value, "code": code}
    if (
        known is not None
        and known.firm_id is not None
        and known.user_id is not None
        and await env.on_firm_record(known.user_id, Action.TOKEN_REFUSED.value)
    ):
        await bind_tenant(session, known.firm_id, known.user_id)
        actor = user_actor(env, known.user_id, known.firm_id, known.role or Role.VIEWER)
        # About the link, not an act of theirs as a member: recorded if they were removed since.
        await chain.record(
            session, actor, Action.TOKEN_REFUSED, "user", known.user_id, details, as_member=False
        )
    elif known is not None and known.user_id is not None:
        named = _account(known.user_id, known.firm_id, **details)
        await chain.record_platform(session, Action.TOKEN_REFUSED, ip=env.ip, **named)
    else:
        await chain.record_platform(session, Action.TOKEN_REFUSED, ip=env.ip, details=details)


async def start_session(
    session: AsyncSession, env: AuthEnv, actor: Actor, email_verified: bool = True
) -> SignedIn:
    cookie = await sessions.create(
        session, actor.id, actor.firm_id, env.session_lifetime, env.ip, env.user_agent
    )
    return SignedIn(cookie, actor, email_verified)


async def proved_owner(session: AsyncSession, env: AuthEnv, email: str | None) -> None:
    """Whoever followed an emailed link (or reset the password) owns the address: its failed
    password sign-ins are forgiven, so a stranger's wrong passwords cannot keep its owner
    throttled, nor throttle an address before it is registered."""
    if email:
        await calls.clear_failed_sign_ins(session, throttle.address_key(env.secret_key, email))


async def prove_address(session: AsyncSession, user_id: uuid.UUID, *, clear_password: bool) -> None:
    """Mark the address verified by an emailed link. If it was not verified yet, whoever set the
    account up before its owner proved the address loses it: every existing session ends and,
    for links that do not confirm the sign-up itself (magic link, invitation), the password
    that stranger chose is cleared. (A pre-registered account cannot be taken over later.)"""
    values: dict[str, Any] = {"email_verified_at": datetime.now(UTC)}
    if clear_password:
        values["password_hash"] = None
    proved = await session.execute(
        update(User)
        .where(User.id == user_id, User.email_verified_at.is_(None))
        .values(values)
        .returning(User.id)
    )
    if proved.scalar_one_or_none() is not None:
        await sessions.revoke_all(session, user_id)
    # Proved, by whichever link: the confirmation links left sign in (given the password, or
    # with none once a sign-in link cleared it). After the user's row, which a resend holds
    # while it decides to send one: this sees the link it then made, or it sees the address
    # proved and sends none.
    await tokens.spend_unused(session, user_id, Purpose.VERIFY_EMAIL)


async def verify_email(
    session: AsyncSession, env: AuthEnv, token: str, password: str | None = None
) -> SignedIn:
    """Mark the address verified and sign the user in; returns the new session's cookie. An
    account signed up with a password is verified only with that password too: the link proves
    the mailbox, not who chose the password, and whoever did would otherwise keep an account
    its owner confirmed unawares (into which a later invitation would let them). Refused, the
    link stays unspent for another try. The password is checked as a sign-in checks it: limited
    per address and caller, and each wrong one counted against the address and on the record,
    or a link would be a way to guess the password unthrottled. Once verified, the user's other
    verification links are spent (``prove_address``)."""
    found = await redeem_link(session, env, Purpose.VERIFY_EMAIL, token)
    actor = user_actor(env, found.user_id, found.firm_id, found.role)
    await bind_tenant(session, actor.firm_id, actor.id)
    # Held until this ends: proved meanwhile by a sign-in link (which clears the password),
    # the address's other confirmation links are spent, but not this one, which this holds;
    # refused here, it would then be unspent, and sign in with no password at all.
    held = select(User.password_hash, User.email_verified_at).where(User.id == actor.id)
    chosen, proved = (await session.execute(held.with_for_update(key_share=True))).one()
    if proved is not None:
        # Proved already, by another link that spent this one but for this redemption's hold
        # (or before links were spent on proof): as spent.
        raise TokenUsed().on_record(
            lambda fresh: record_refusal(fresh, env, Purpose.VERIFY_EMAIL, TokenUsed.code, found)
        )
    if chosen is not None:
        refused = InvalidCredentials("Enter the password you chose when you signed up.")
        if not password:
            raise refused  # nothing guessed (a page's box left empty): neither counted nor recorded
        await env.limit_sign_in(found.email)
        address = await _unthrottled(session, env, found.email, found)
        if not (
            len(password) <= passwords.MAX_LENGTH
            and await passwords.verify_password(chosen, password)
        ):
            raise refused.on_record(
                lambda fresh: _record_failure(fresh, env, address, found, Action.SIGN_IN_FAILED)
            )
    await prove_address(session, actor.id, clear_password=False)
    await proved_owner(session, env, found.email)
    await chain.record(session, actor, Action.EMAIL_VERIFIED, "user", actor.id)
    return await start_session(session, env, actor)


async def resend_verification(session: AsyncSession, env: AuthEnv, data: EmailOnly) -> None:
    """Send a fresh verification link if the address is registered and unverified."""
    await env.limit_mail(data.email)
    user = await calls.user_by_email(session, data.email)
    if user is not None and not user.email_verified and user.firm_id is not None:
        await bind_tenant(session, user.firm_id, user.user_id)
        # Read again, holding the row until this commits: a confirmation meanwhile spent the
        # links there were, so a link made after it would outlive the proof (``prove_address``).
        held = select(User.email_verified_at).where(User.id == user.user_id)
        held = held.with_for_update(key_share=True)
        if await session.scalar(held) is None:
            await _issue_and_send(session, env, Purpose.VERIFY_EMAIL, user.user_id, data.email)
            actor = user_actor(env, user.user_id, user.firm_id, Role(user.role))
            await chain.record(
                session, actor, Action.VERIFICATION_SENT, "user", user.user_id, as_member=False
            )
    # Registered or not, as in _send_if_known (see why there).
    await chain.record_platform(session, Action.VERIFICATION_SENT, ip=env.ip)


async def sign_in_with_password(
    session: AsyncSession, env: AuthEnv, data: PasswordSignIn
) -> SignedIn:
    """Check the password and start a session; wrong password and unknown email fail alike."""
    await env.limit_sign_in(data.email)
    user = await calls.user_by_email(session, data.email)
    address = await _unthrottled(session, env, data.email, user)
    matches = await passwords.verify_password(user.password_hash if user else None, data.password)
    if user is None or not matches or user.firm_id is None:
        raise InvalidCredentials().on_record(
            lambda fresh: _record_failure(fresh, env, address, user, Action.SIGN_IN_FAILED)
        )
    actor = user_actor(env, user.user_id, user.firm_id, Role(user.role))
    await bind_tenant(session, actor.firm_id, actor.id)
    if not await _still_matches(session, actor.id, user.password_hash, data.password):
        raise InvalidCredentials().on_record(
            lambda fresh: _record_failure(fresh, env, address, user, Action.SIGN_IN_FAILED)
        )
    await calls.clear_failed_sign_ins(session, address)
    details = {"method": "password"}
    await chain.record(session, actor, Action.SIGN_IN_SUCCEEDED, "user", actor.id, details)
    return await start_session(session, env, actor, user.email_verified)


async def _unthrottled(session: AsyncSession, env: AuthEnv, email: str, user: Any) -> bytes:
    """The address's throttle key, unless its failed password checks throttle it: refused."""
    now = datetime.now(UTC)
    # Counted by address, registered or not: a throttled answer tells nothing of which it is.
    address = throttle.address_key(env.secret_key, email)
    throttled_until = await calls.sign_in_throttled_until(session, address)
    if throttled_until is not None and throttled_until > now:
        # Rounded up, as every retryAfter is: a client that waits exactly that long gets
        # through rather than meeting the throttle (and its entry on the trail) again.
        retry_after = max(1, math.ceil((throttled_until - now).total_seconds()))
        raise RateLimited(retryAfter=retry_after).on_record(
            lambda fresh: _record_failure(fresh, env, address, user, Action.SIGN_IN_THROTTLED)
        )
    return address


async def _still_matches(
    session: AsyncSession, user_id: uuid.UUID, checked: str, password: str
) -> bool:
    """Whether the password still matches the user's hash, read again under a lock held until
    the commit (and rehashed if due): a reset (or a proved address) that committed while
    ``checked`` was checked against the password changed it, and ended the sessions before
    this one began; one still running waits for this commit and ends this session with the
    rest. Another sign-in's rehash changes the hash but not the password: checked again."""
    held = select(User.password_hash).where(User.id == user_id).with_for_update(key_share=True)
    current = await session.scalar(held)
    if current is None or (
        current != checked and not await passwords.verify_password(current, password)
    ):
        return False
    if passwords.needs_rehash(current):
        rehashed = await passwords.hash_password(password)
        await session.execute(update(User).where(User.id == user_id).values(password_hash=rehashed))
    return True


async def _record_failure(
    session: AsyncSession, env: AuthEnv, address: bytes, user: Any, action: Action
) -> None:
    """After the failed attempt rolled back: count it against the address (its throttle key;
    registered or not) and audit it, in the account's firm if there is one."""
    if action is Action.SIGN_IN_FAILED:
        await calls.note_failed_sign_in(session, address, THROTTLE_AFTER_FAILURES)
    named: dict[str, Any] = {}
    if user is not None:
        if user.firm_id is not None and await env.on_firm_record(user.user_id, action.value):
            await bind_tenant(session, user.firm_id, user.user_id)
            actor = user_actor(env, user.user_id, user.firm_id, Role(user.role))
            await chain.record(session, actor, action, "user", user.user_id, as_member=False)
        else:
            named = _account(user.user_id, user.firm_id)
    # Registered or not, as in _send_if_known (see why there): the refusal is answered after.
    await chain.record_platform(session, action, ip=env.ip, **named)


def _account(user_id: uuid.UUID, firm_id: uuid.UUID | None, **details: Any) -> dict[str, Any]:
    """What names an account on the platform's chain: a refusal about it kept off its firm's
    chain (past the bound on those), or about one in no firm, must still say whose it was."""
    if firm_id is not None:
        details["firm_id"] = str(firm_id)
    return {"target_type": "user", "target_id": user_id, "details": details}


async def request_magic_link(session: AsyncSession, env: AuthEnv, data: EmailOnly) -> None:
    """Email a sign-in link if the address is registered; the answer is the same either way.
    Throttled password sign-in does not block this: a stranger cannot lock the owner out."""
    await env.limit_mail(data.email)
    await _send_if_known(session, env, data.email, Purpose.MAGIC_LINK, Action.MAGIC_LINK_REQUESTED)


async def _send_if_known(
    session: AsyncSession, env: AuthEnv, email: str, purpose: Purpose, action: Action
) -> None:
    user = await calls.user_by_email(session, email)
    if user is not None and user.firm_id is not None:
        await bind_tenant(session, user.firm_id, user.user_id)
        await _issue_and_send(session, env, purpose, user.user_id, email)
        actor = user_actor(env, user.user_id, user.firm_id, Role(user.role))
        # Answered alike whoever asks: their removal meanwhile refuses nothing.
        await chain.record(session, actor, action, "user", user.user_id, as_member=False)
    # Every request is on the platform chain, registered address or not (naming neither): each
    # then waits alike for that chain's one lock, so that unknown addresses, which queue for it,
    # answer no later than registered ones while someone floods it. Last, to hold it least.
    await chain.record_platform(session, action, ip=env.ip)


async def sign_in_with_magic_link(session: AsyncSession, env: AuthEnv, token: str) -> SignedIn:
    """The link itself authenticates (and proves the address); returns the session cookie."""
    found = await redeem_link(session, env, Purpose.MAGIC_LINK, token)
    if found.firm_id is None:
        # Removed from every firm since the link was sent: nothing to sign in to. The link
        # proves the mailbox, so its holder is told so (a password sign-in is told nothing).
        refused = Forbidden("You are no longer a member of any firm.")
        code = refused.code
        raise refused.on_record(
            lambda fresh: record_refusal(fresh, env, Purpose.MAGIC_LINK, code, found)
        )
    actor = user_actor(env, found.user_id, found.firm_id, found.role)
    await bind_tenant(session, actor.firm_id, actor.id)
    await prove_address(session, actor.id, clear_password=True)
    await proved_owner(session, env, found.email)
    details = {"method": "magic_link"}
    await chain.record(session, actor, Action.SIGN_IN_SUCCEEDED, "user", actor.id, details)
    return await start_session(session, env, actor)


async def request_password_reset(session: AsyncSession, env: AuthEnv, data: EmailOnly) -> None:
    """Email a reset link if the address is registered; the answer is the same either way."""
    await env.limit_mail(data.email)
    await _send_if_known(
        session, env, data.email, Purpose.PASSWORD_RESET, Action.PASSWORD_RESET_REQUESTED
    )


async def reset_password(session: AsyncSession, env: AuthEnv, token: str, password: str) -> None:
    """Set a new password and revoke every session of the user. A weak password fails the whole
    transaction, so the link is not spent."""
    found = await redeem_link(session, env, Purpose.PASSWORD_RESET, token)
    await passwords.check_strength(password, email=found.email or "", field="newPassword")
    actor = user_actor(env, found.user_id, found.firm_id, found.role)
    await bind_tenant(session, actor.firm_id, actor.id)
    # Links first, before this transaction holds anything a sign-in by link under way needs
    # (the user's row, the address's failures): that sign-in holds its link's row, so this
    # waits for it to commit and then ends its session with the rest; or it finds it spent.
    await tokens.spend_sign_in_links(session, actor.id)
    now = datetime.now(UTC)
    await session.execute(
        update(User)
        .where(User.id == actor.id)
        .values(password_hash=await passwords.hash_password(password))
    )
    await proved_owner(session, env, found.email)
    await session.execute(
        update(User)
        .where(User.id == actor.id, User.email_verified_at.is_(None))
        .values(email_verified_at=now)
    )
    await sessions.revoke_all(session, actor.id)
    # The account's remedy, recorded in the firm the user is in now (a link names none), or,
    # for one removed from every firm since it was sent, on the platform chain: they still
    # take their account back.
    if actor.firm_id is None:
        await chain.record_platform(
            session,
            Action.PASSWORD_RESET_COMPLETED,
            actor_type=ActorType.USER,
            actor_id=actor.id,
            ip=env.ip,
            target_type="user",
            target_id=actor.id,
        )
    else:
        await chain.record(
            session, actor, Action.PASSWORD_RESET_COMPLETED, "user", actor.id, as_member=False
        )
