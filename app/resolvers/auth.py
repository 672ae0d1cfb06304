"""Resolvers for the public sign-up and sign-in flows."""

from __future__ import annotations

import functools

from app.auth import account, service
from app.auth.schemas import EmailOnly, PasswordSignIn, SignUp
from app.auth.service import SignedIn
from app.auth.sessions import SessionIdentity
from app.errors import SignedInAsAnother
from app.schema.auth import MailSentPayload, OkPayload, SignInPayload, SignUpInput
from app.schema.context import Context, Info, actor_of

# How long the flows that answer alike for registered and unknown addresses take, whichever
# it is: a registered one issues a link, queues its mail and appends to its firm's chain, a few
# round trips more than an unknown one (~1 ms, which enough probes would average out). Ample
# for that work under load, and unnoticed by whoever waits for an email.
ALIKE_SECONDS = 0.5

MAIL_SENT = MailSentPayload(
    accepted=True,
    message="If that address can be used, we have sent an email to it. Check your inbox.",
)


def signed_in(
    context: Context, result: SignedIn, *, switch: bool = True, firm_too: bool = False
) -> SignInPayload:
    """The payload of a flow that signed ``result``'s user in, its cookie set once it commits.
    A link's flow (``switch``: unless the caller confirmed it) may not silently replace the
    browser's session of another user: anyone could send a signed-in person their own sign-in
    link, and whatever that person then entered went into the sender's firm (login CSRF). Nor,
    ``firm_too`` (an invitation's), move it to another firm: anyone could invite a signed-in
    person's own address to a look-alike firm. Refused, it rolls back whole: the link is not
    spent."""
    identity = context.identity
    if not switch and isinstance(identity, SessionIdentity):
        if identity.user_id != result.actor.id:
            raise SignedInAsAnother()
        if firm_too and identity.firm_id != result.actor.firm_id:
            raise SignedInAsAnother(
                "This invitation is to another firm than the one this browser is signed in "
                "to. Confirm that you want to join it and switch to it."
            )
    context.new_session_cookie = result.cookie
    if isinstance(context.identity, SessionIdentity):
        # The browser's old session, once this one has committed: bound to its own firm, which
        # this transaction (bound to the new session's) cannot be.
        replaced = actor_of(context.identity, context.ip)
        context.after_commit.append(functools.partial(account.end_replaced_session, actor=replaced))
    return SignInPayload(
        user_id=result.actor.id,
        firm_id=result.actor.firm_id,
        role=result.actor.role,
        email_verified=result.email_verified,
    )


async def sign_up(info: Info, input: SignUpInput) -> MailSentPayload:
    info.context.answer_no_sooner(ALIKE_SECONDS)
    data = SignUp.model_validate(vars(input))
    await info.context.run_public(service.sign_up, data)
    return MAIL_SENT


async def verify_email(
    info: Info, token: str, password: str | None = None, switch_account: bool = False
) -> SignInPayload:
    result = await info.context.run_public(service.verify_email, token, password)
    return signed_in(info.context, result, switch=switch_account)


async def resend_verification(info: Info, email: str) -> MailSentPayload:
    info.context.answer_no_sooner(ALIKE_SECONDS)
    data = EmailOnly(email=email)
    await info.context.run_public(service.resend_verification, data)
    return MAIL_SENT


async def request_magic_link(info: Info, email: str) -> MailSentPayload:
    info.context.answer_no_sooner(ALIKE_SECONDS)
    await info.context.run_public(service.request_magic_link, EmailOnly(email=email))
    return MAIL_SENT


async def sign_in_with_magic_link(
    info: Info, token: str, switch_account: bool = False
) -> SignInPayload:
    result = await info.context.run_public(service.sign_in_with_magic_link, token)
    return signed_in(info.context, result, switch=switch_account)


async def sign_in_with_password(info: Info, email: str, password: str) -> SignInPayload:
    data = PasswordSignIn(email=email, password=password)
    try:
        result = await info.context.run_public(service.sign_in_with_password, data)
    except Exception:
        # A registered address's refusal is also on its firm's chain (its lock, a few round
        # trips): a refusal, registered or not, or a failure on the way to one, is answered
        # when the others above are.
        info.context.answer_no_sooner(ALIKE_SECONDS)
        raise
    return signed_in(info.context, result)


async def request_password_reset(info: Info, email: str) -> MailSentPayload:
    info.context.answer_no_sooner(ALIKE_SECONDS)
    await info.context.run_public(service.request_password_reset, EmailOnly(email=email))
    return MAIL_SENT


async def reset_password(info: Info, token: str, new_password: str) -> OkPayload:
    await info.context.run_public(service.reset_password, token, new_password)
    return OkPayload(ok=True)
