"""The trail's promise, mutation by mutation: every GraphQL mutation that changes something
appends its action(s) to the acting firm's chain, in the transaction of its change, and on no
other chain. The schema's mutations and RECORDS must agree, so a mutation added without saying
what it records fails here before it ships; each is then called once, through HTTP as a client
calls it, and the whole log (every chain, the platform's too) is read before and after."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import graphql
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.actions import Action
from app.auth.actor import Role
from app.auth.sessions import token_hash
from app.evidence.signature import PackSigner
from app.schema import build_schema
from tests.audit.test_recorded_actions import RESEND, RESET, RESET_REQUEST, REVOKE_SESSION
from tests.audit.test_tamper import CHECKPOINT, VERIFY
from tests.auth.test_members import (
    CHANGE,
    INVITATIONS,
    REMOVE,
    REVOKE_INVITATION,
    firm_id_of,
    invited,
)
from tests.auth.test_sessions import SIGN_OUT, SIGN_OUT_EVERYWHERE, SWITCH, sign_in
from tests.browser import (
    MAGIC,
    MAGIC_SIGN_IN,
    PASSWORD,
    SIGN_IN,
    SIGN_UP,
    Browser,
    NewBrowser,
    link_token,
    new_email,
    signed_up,
)
from tests.browser import VERIFY as VERIFY_EMAIL
from tests.counterparties.test_counterparties_graphql import ACME, ARCHIVE
from tests.counterparties.test_counterparties_graphql import CREATE as CREATE_COUNTERPARTY
from tests.counterparties.test_counterparties_graphql import UPDATE as UPDATE_COUNTERPARTY
from tests.declarations.test_firm_side import (
    ACCEPT,
    BULK,
    CREATE_TEMPLATE,
    CREATE_VERSION,
    REISSUE,
    REMIND,
    REVOKE,
    SEND,
    UPDATE_FIRM,
    create,
    create_template,
    form,
    nth_link,
    ok,
    question,
    submission,
    template_input,
)
from tests.declarations.test_loop import FIT, SUBMIT, valid_answers
from tests.evidence.support import GENERATE, RETRY, generate, pack_row, period
from tests.factories import Member, Members, codes, gql, user_and_firm
from tests.mail.smtp import SmtpServer
from tests.partners import CREATE_KEY, REVOKE_KEY

# What one successful call records, in chain order. bulkCreateDeclarations records its actions
# once per recipient (and "declaration.sent" only when it sends, its default).
RECORDS: dict[str, tuple[str, ...]] = {
    "generateEvidencePack": ("evidence_pack.requested", "evidence_pack.generated"),
    "retryEvidencePack": ("evidence_pack.requested", "evidence_pack.generated"),
    "createApiKey": ("api_key.created",),
    "revokeApiKey": ("api_key.revoked",),
    "createAuditCheckpoint": ("audit.checkpoint_created",),
    "createCounterparty": ("counterparty.created",),
    "updateCounterparty": ("counterparty.updated",),
    "archiveCounterparty": ("counterparty.archived",),
    "createTemplate": ("template.created",),
    "createTemplateVersion": ("template.version_created",),
    "createDeclaration": ("declaration.created",),
    "bulkCreateDeclarations": ("declaration.created", "declaration.sent"),
    "sendDeclaration": ("declaration.sent",),
    "remindDeclaration": ("declaration.reminded",),
    "reissueDeclarationLink": ("declaration.link_reissued",),
    "revokeDeclaration": ("declaration.revoked",),
    "submitDeclaration": ("declaration.submitted",),
    "updateFirm": ("firm.updated",),
    "signUp": ("auth.signed_up",),
    "verifyEmail": ("auth.email_verified",),
    "resendVerification": ("auth.verification.sent",),
    "requestMagicLink": ("auth.magic_link.requested",),
    "signInWithMagicLink": ("auth.sign_in.succeeded",),
    "signInWithPassword": ("auth.sign_in.succeeded",),
    "requestPasswordReset": ("auth.password_reset.requested",),
    "resetPassword": ("auth.password_reset.completed",),
    "signOut": ("auth.signed_out",),
    "signOutEverywhere": ("auth.signed_out_everywhere",),
    "revokeSession": ("auth.session.revoked",),
    "switchFirm": ("auth.firm_switched",),
    "inviteMember": ("member.invited",),
    "acceptInvitation": ("member.joined",),
    "changeMemberRole": ("member.role_changed",),
    "removeMember": ("member.removed",),
    "revokeInvitation": ("member.invitation_revoked",),
}

# Recorded on the platform chain too, naming no address, registered or not: so that both kinds
# of address wait for its lock alike (app/auth/service.py, _send_if_known).
PLATFORM_TOO = frozenset(
    {"signUp", "resendVerification", "requestMagicLink", "requestPasswordReset"}
)

# Mutations no scenario below can call successfully through HTTP, each with the reason. Empty:
# every mutation is exercised. A mutation listed here must say why, never just be skipped.
NOT_EXERCISED: dict[str, str] = {}

# Which scenario calls which mutations (each exactly once across the file).
FIRM_AND_KEYS = (
    "updateFirm",
    "createCounterparty",
    "updateCounterparty",
    "archiveCounterparty",
    "createApiKey",
    "revokeApiKey",
    "createAuditCheckpoint",
)
DECLARATIONS = (
    "createTemplate",
    "createTemplateVersion",
    "createDeclaration",
    "sendDeclaration",
    "remindDeclaration",
    "reissueDeclarationLink",
    "submitDeclaration",
    "revokeDeclaration",
    "bulkCreateDeclarations",
)
EVIDENCE = ("generateEvidencePack", "retryEvidencePack")
ACCOUNTS = (
    "signUp",
    "resendVerification",
    "verifyEmail",
    "requestMagicLink",
    "signInWithMagicLink",
    "signInWithPassword",
    "revokeSession",
    "signOut",
    "requestPasswordReset",
    "resetPassword",
    "signOutEverywhere",
)
MEMBERSHIP = (
    "inviteMember",
    "acceptInvitation",
    "changeMemberRole",
    "removeMember",
    "revokeInvitation",
    "switchFirm",
)
SCENARIOS = (FIRM_AND_KEYS, DECLARATIONS, EVIDENCE, ACCOUNTS, MEMBERSHIP)


@dataclass(frozen=True)
class Entry:
    action: str
    actor_type: str
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]


Chains = dict[str | None, list[Entry]]  # firm id (None: the platform chain) -> new entries


class Trail:
    """The whole audit log, every chain, as the superuser reads it: what each step appended,
    and where. A step must append exactly its mutation's actions to exactly one chain."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.heads: dict[str | None, int] = {}
        self.covered: list[str] = []

    async def _since(self, heads: dict[str | None, int]) -> list[tuple[str | None, Entry]]:
        """Every entry past ``heads`` (by chain), in chain order. Only entries past the
        heads are sent back: the suite's other tests leave tens of thousands in the log."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "select a.firm_id::text as firm, a.action, a.actor_type, a.actor_id, "
                    "a.target_type, a.target_id, a.details from audit_log a "
                    "left join jsonb_each_text(cast(:heads as jsonb)) h "
                    "on h.key = coalesce(a.firm_id::text, 'platform') "
                    "where a.seq > coalesce(h.value::bigint, 0) order by a.firm_id, a.seq"
                ),
                {"heads": json.dumps({k or "platform": v for k, v in heads.items()})},
            )
        return [
            (
                row.firm,
                Entry(
                    row.action,
                    row.actor_type,
                    row.actor_id,
                    row.target_type,
                    row.target_id,
                    row.details,
                ),
            )
            for row in rows
        ]

    async def mark(self) -> None:
        """From here on: what was appended before this is not the next step's."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "select firm_id::text as firm, max(seq) as seq from audit_log group by firm_id"
                )
            )
        self.heads = {row.firm: row.seq for row in rows}

    async def added(self) -> Chains:
        """The entries appended since the last mark, by chain; marks again."""
        found: Chains = {}
        for firm, entry in await self._since(self.heads):
            found.setdefault(firm, []).append(entry)
        await self.mark()
        return found

    async def expect(
        self, chain: str, actions: Sequence[str], platform: Sequence[str] = ()
    ) -> list[Entry]:
        """The step appended ``actions``, in order, to ``chain``, and ``platform`` to the
        platform chain, and nothing anywhere else."""
        found = await self.added()
        expected = {chain: list(actions), **({None: list(platform)} if platform else {})}
        assert {c: [e.action for e in es] for c, es in found.items()} == expected
        return found[chain]

    async def recorded(self, mutation: str, chain: str, times: int = 1) -> list[Entry]:
        """The step (one call of ``mutation``) appended what RECORDS says, on ``chain`` alone
        (and on the platform chain too, for those in PLATFORM_TOO)."""
        self.covered.append(mutation)
        actions = RECORDS[mutation] * times
        return await self.expect(chain, actions, actions if mutation in PLATFORM_TOO else ())


@pytest.fixture
async def trail(superuser_engine: AsyncEngine) -> Trail:
    found = Trail(superuser_engine)
    await found.mark()
    return found


def targets(entries: list[Entry]) -> list[tuple[str | None, str | None]]:
    return [(e.target_type, e.target_id) for e in entries]


def by(entries: list[Entry]) -> set[tuple[str, str | None]]:
    return {(e.actor_type, e.actor_id) for e in entries}


async def session_id(engine: AsyncEngine, cookie: str | None) -> str:
    assert cookie is not None
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("select id::text from sessions where token_hash = :h"), {"h": token_hash(cookie)}
        )
    assert isinstance(found, str)
    return found


async def chain_verifies(browser: Browser) -> None:
    """The firm's chain, every entry the scenario appended included, still links and hashes."""
    verified = ok(await browser.gql(VERIFY))["verifyAuditChain"]
    assert (verified["ok"], verified["failure"]) == (True, None), verified


# ---- 1. the table is the schema ----------------------------------------------------------------


def test_every_mutation_of_the_schema_says_what_it_records() -> None:
    """A mutation added to the schema without a row here fails: what it records must be decided
    (and then exercised below), not discovered after an auditor asks."""
    schema = graphql.build_schema(build_schema(production=False).as_str())
    assert schema.mutation_type is not None
    assert set(schema.mutation_type.fields) == set(RECORDS)
    assert len(RECORDS) == 35


def test_every_recorded_action_is_in_the_vocabulary() -> None:
    """The table can only name actions docs/audit.md and app/audit/actions.py define."""
    vocabulary = {action.value for action in Action}
    assert {a for actions in RECORDS.values() for a in actions} <= vocabulary
    assert all(RECORDS.values())


def test_each_mutation_is_called_by_exactly_one_scenario_or_says_why_not() -> None:
    called = [mutation for scenario in SCENARIOS for mutation in scenario]
    assert len(called) == len(set(called))
    assert set(called) | set(NOT_EXERCISED) == set(RECORDS)
    assert not set(called) & set(NOT_EXERCISED)
    assert all(reason.strip() for reason in NOT_EXERCISED.values())


# ---- 2. each mutation, called once, records its entries -----------------------------------------


async def test_firm_counterparty_key_and_checkpoint_mutations_are_recorded(
    browser: Browser, smtp: SmtpServer, trail: Trail
) -> None:
    await signed_up(browser, smtp, firm="Every Mutation Ltd")
    firm_id = await firm_id_of(browser)
    await trail.mark()

    renamed = ok(await browser.gql(UPDATE_FIRM, {"n": "Every Mutation Advisers Ltd"}))
    assert renamed["updateFirm"]["firm"]["name"] == "Every Mutation Advisers Ltd"
    [entry] = await trail.recorded("updateFirm", firm_id)
    assert targets([entry]) == [("firm", firm_id)]
    assert entry.details["changes"]["name"]["to"] == "Every Mutation Advisers Ltd"

    made = ok(await browser.gql(CREATE_COUNTERPARTY, {"input": ACME}))
    counterparty_id = made["createCounterparty"]["counterparty"]["id"]
    entries = await trail.recorded("createCounterparty", firm_id)
    assert targets(entries) == [("counterparty", counterparty_id)]

    changed = {"id": counterparty_id, "input": {"notes": "Now also insurance."}}
    assert ok(await browser.gql(UPDATE_COUNTERPARTY, changed))
    [entry] = await trail.recorded("updateCounterparty", firm_id)
    assert targets([entry]) == [("counterparty", counterparty_id)]
    assert entry.details["changes"]["notes"]["to"] == "Now also insurance."

    archived = ok(await browser.gql(ARCHIVE, {"id": counterparty_id}))
    assert archived["archiveCounterparty"]["counterparty"]["archived"] is True
    entries = await trail.recorded("archiveCounterparty", firm_id)
    assert targets(entries) == [("counterparty", counterparty_id)]

    key = ok(await browser.gql(CREATE_KEY, {"i": {"name": "CRM", "scopes": ["AUDIT_READ"]}}))
    key_id = key["createApiKey"]["apiKey"]["id"]
    [entry] = await trail.recorded("createApiKey", firm_id)
    assert targets([entry]) == [("api_key", key_id)]
    assert key["createApiKey"]["secret"] not in str(entry.details)

    revoked = ok(await browser.gql(REVOKE_KEY, {"id": key_id}))
    assert revoked["revokeApiKey"]["apiKey"]["revokedAt"] is not None
    entries = await trail.recorded("revokeApiKey", firm_id)
    assert targets(entries) == [("api_key", key_id)]

    checkpoint = ok(await browser.gql(CHECKPOINT))["createAuditCheckpoint"]["checkpoint"]
    entries = await trail.recorded("createAuditCheckpoint", firm_id)
    assert targets(entries) == [("audit_checkpoint", checkpoint["id"])]
    # The checkpoint signs the head its own request made: that entry.
    async with trail.engine.connect() as conn:
        head = await conn.scalar(
            text("select max(seq) from audit_log where firm_id = :f"), {"f": firm_id}
        )
    assert checkpoint["seq"] == head

    await chain_verifies(browser)
    assert trail.covered == list(FIRM_AND_KEYS)


async def test_template_and_declaration_mutations_are_recorded(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, trail: Trail
) -> None:
    await signed_up(browser, smtp, firm="Declaring Ltd")
    firm_id = await firm_id_of(browser)
    user = {("user", (await user_and_firm(trail.engine, await _email_of(browser)))[0])}
    await trail.mark()

    template_id = await create_template(browser, "Our own", question("q1", "short_text"))
    entries = await trail.recorded("createTemplate", firm_id)
    assert (targets(entries), by(entries)) == ([("template", template_id)], user)

    spec = template_input("Our own, again", question("q1", "long_text"))
    version = ok(await browser.gql(CREATE_VERSION, {"t": template_id, "i": spec}))
    assert version["createTemplateVersion"]["template"]["version"] == 2
    [entry] = await trail.recorded("createTemplateVersion", firm_id)
    named = {"version": 2, "name": "Our own, again", "audience": "person"}
    assert (targets([entry]), entry.details) == ([("template", template_id)], named)

    email = new_email()
    declaration_id = (await create(browser, email=email))["id"]
    entries = await trail.recorded("createDeclaration", firm_id)
    assert (targets(entries), by(entries)) == ([("declaration", declaration_id)], user)

    sent = ok(await browser.gql(SEND, {"id": declaration_id}))["sendDeclaration"]["declaration"]
    assert sent["status"] == "SENT"
    entries = await trail.recorded("sendDeclaration", firm_id)
    assert targets(entries) == [("declaration", declaration_id)]
    await nth_link(smtp, email, 1)

    reminded = ok(await browser.gql(REMIND, {"id": declaration_id}))
    assert reminded["remindDeclaration"]["declaration"]["reminderCount"] == 1
    entries = await trail.recorded("remindDeclaration", firm_id)
    assert targets(entries) == [("declaration", declaration_id)]
    await nth_link(smtp, email, 2)

    assert ok(await browser.gql(REISSUE, {"id": declaration_id}))
    entries = await trail.recorded("reissueDeclarationLink", firm_id)
    assert targets(entries) == [("declaration", declaration_id)]
    token = await nth_link(smtp, email, 3)

    recipient = new_browser()
    # Opening the form is a query, yet on the record too (the recipient's first view).
    questions = (await form(recipient, token))["questions"]
    opened = await trail.expect(firm_id, ["declaration.opened"])
    assert by(opened) == {("recipient", declaration_id)}
    done = ok(await recipient.gql(SUBMIT, {"t": token, "i": submission(valid_answers(questions))}))
    receipt = done["submitDeclaration"]["responseSha256"]
    [entry] = await trail.recorded("submitDeclaration", firm_id)
    assert (targets([entry]), by([entry])) == (
        [("declaration", declaration_id)],
        {("recipient", declaration_id)},
    )
    assert entry.details["response_sha256"] == receipt

    withdrawn = (await create(browser))["id"]
    await trail.expect(firm_id, RECORDS["createDeclaration"])
    revoked = ok(await browser.gql(REVOKE, {"id": withdrawn}))["revokeDeclaration"]
    assert revoked["declaration"]["status"] == "REVOKED"
    entries = await trail.recorded("revokeDeclaration", firm_id)
    assert targets(entries) == [("declaration", withdrawn)]

    recipients = [{"name": "Ann", "email": new_email()}, {"name": "Bo", "email": new_email()}]
    bulk = {"templateId": str(FIT.id), "recipients": recipients}
    made = ok(await browser.gql(BULK, {"i": bulk}))["bulkCreateDeclarations"]["declarations"]
    assert [d["status"] for d in made] == ["SENT", "SENT"]
    entries = await trail.recorded("bulkCreateDeclarations", firm_id, times=len(recipients))
    ids = [d["id"] for d in made]
    assert targets(entries) == [("declaration", i) for i in ids for _ in range(2)]

    await chain_verifies(browser)
    assert trail.covered == list(DECLARATIONS)


async def _email_of(browser: Browser) -> str:
    found: str = ok(await browser.gql("{ viewer { user { email } } }"))["viewer"]["user"]["email"]
    return found


async def test_evidence_pack_mutations_are_recorded(
    browser: Browser,
    smtp: SmtpServer,
    trail: Trail,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack is rendered outside the chain lock and recorded only once stored: the entries
    must still come, both of them, with the pack they vouch for."""
    await signed_up(browser, smtp, firm="Evidence Every Ltd")
    firm_id = await firm_id_of(browser)
    await trail.mark()

    pack = await generate(browser, "Quarterly")
    assert pack["status"] == "READY", pack
    [requested, generated] = await trail.recorded("generateEvidencePack", firm_id)
    assert targets([requested, generated]) == [("evidence_pack", pack["id"])] * 2
    assert generated.details["sha256"] == pack["sha256"]
    assert (await pack_row(trail.engine, pack["id"])).status == "ready"

    # A pack that could not be signed fails, on the record, and is what a retry is for.
    def unsigned(self: PackSigner, pdf: bytes, pack_id: str) -> bytes:
        raise ValueError("the signing key is unusable")

    with monkeypatch.context() as patched:
        patched.setattr(PackSigner, "sign", unsigned)
        failed = await generate(browser, "Retried")
    assert failed["status"] == "FAILED", failed
    await trail.expect(firm_id, ["evidence_pack.requested", "evidence_pack.failed"])

    body = await browser.gql(RETRY, {"id": failed["id"]})
    retried = ok(body)["retryEvidencePack"]["pack"]
    assert retried["status"] == "READY", retried
    [requested, generated] = await trail.recorded("retryEvidencePack", firm_id)
    assert targets([requested, generated]) == [("evidence_pack", failed["id"])] * 2
    assert requested.details["retry"] is True
    assert generated.details["sha256"] == retried["sha256"]

    await chain_verifies(browser)
    assert trail.covered == list(EVIDENCE)


async def test_account_mutations_are_recorded_on_the_users_firm_chain(
    smtp: SmtpServer, new_browser: NewBrowser, trail: Trail
) -> None:
    """These start before any firm is known (most are public): each must still land on the
    chain of the user's own firm, not the platform's, or the firm could not see who signed in."""
    email = new_email()
    first = new_browser()
    variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Account Ltd"}}
    assert ok(await first.gql(SIGN_UP, variables))["signUp"]["accepted"] is True
    user_id, firm_id = await user_and_firm(trail.engine, email)
    user = {("user", user_id)}
    itself = [("user", user_id)]
    entries = await trail.recorded("signUp", firm_id)  # a new firm: its chain starts here
    assert (targets(entries), by(entries)) == (itself, user)
    await link_token(smtp, email, "Confirm your email")

    assert ok(await first.gql(RESEND, {"e": email}))["resendVerification"]["accepted"] is True
    entries = await trail.recorded("resendVerification", firm_id)
    assert (targets(entries), by(entries)) == (itself, user)
    await smtp.wait_for(lambda _: len(smtp.to(email)) == 2)

    token = await link_token(smtp, email, "Confirm your email")
    verified = ok(await first.gql(VERIFY_EMAIL, {"t": token, "p": PASSWORD}))["verifyEmail"]
    assert (verified["firmId"], verified["emailVerified"]) == (firm_id, True)
    entries = await trail.recorded("verifyEmail", firm_id)
    assert (targets(entries), by(entries)) == (itself, user)

    assert ok(await first.gql(MAGIC, {"e": email}))["requestMagicLink"]["accepted"] is True
    entries = await trail.recorded("requestMagicLink", firm_id)
    assert (targets(entries), by(entries)) == (itself, user)

    # Each sign-in in a browser holding no session, so none is replaced (and recorded so).
    token = await link_token(smtp, email, "sign-in link")
    phone = new_browser()
    signed_in = ok(await phone.gql(MAGIC_SIGN_IN, {"t": token}))["signInWithMagicLink"]
    assert signed_in == {"userId": user_id, "firmId": firm_id}
    [entry] = await trail.recorded("signInWithMagicLink", firm_id)
    assert (entry.details, by([entry])) == ({"method": "magic_link"}, user)

    laptop = new_browser()
    await sign_in(laptop, email)
    [entry] = await trail.recorded("signInWithPassword", firm_id)
    assert (entry.details, by([entry])) == ({"method": "password"}, user)

    phone_session = await session_id(trail.engine, phone.session_cookie)
    ended = await laptop.gql(REVOKE_SESSION, {"id": phone_session})
    assert ok(ended)["revokeSession"]["ok"] is True
    entries = await trail.recorded("revokeSession", firm_id)
    assert (targets(entries), by(entries)) == ([("session", phone_session)], user)

    laptop_session = await session_id(trail.engine, laptop.session_cookie)
    assert ok(await laptop.gql(SIGN_OUT))["signOut"]["ok"] is True
    entries = await trail.recorded("signOut", firm_id)
    assert (targets(entries), by(entries)) == ([("session", laptop_session)], user)

    asked = ok(await laptop.gql(RESET_REQUEST, {"e": email}))
    assert asked["requestPasswordReset"]["accepted"] is True
    entries = await trail.recorded("requestPasswordReset", firm_id)
    assert (targets(entries), by(entries)) == (itself, user)

    token = await link_token(smtp, email, "Reset your")
    reset = await laptop.gql(RESET, {"t": token, "p": PASSWORD + " renewed"})
    assert ok(reset)["resetPassword"]["ok"] is True
    entries = await trail.recorded("resetPassword", firm_id)
    assert (targets(entries), by(entries)) == (itself, user)

    desk = new_browser()
    body = await desk.gql(SIGN_IN, {"e": email, "p": PASSWORD + " renewed"})
    assert ok(body)["signInWithPassword"]["firmId"] == firm_id
    await trail.expect(firm_id, RECORDS["signInWithPassword"])
    everywhere = ok(await desk.gql(SIGN_OUT_EVERYWHERE))
    assert everywhere["signOutEverywhere"]["ok"] is True
    [entry] = await trail.recorded("signOutEverywhere", firm_id)
    assert (targets([entry]), entry.details) == (itself, {"sessions": 1})

    assert trail.covered == list(ACCOUNTS)
    verifier = new_browser()
    assert ok(await verifier.gql(SIGN_IN, {"e": email, "p": PASSWORD + " renewed"}))
    await trail.expect(firm_id, RECORDS["signInWithPassword"])
    await chain_verifies(verifier)


async def test_membership_mutations_are_recorded_on_the_firm_they_change(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, trail: Trail
) -> None:
    """A user of two firms acts in one: the entry belongs to that firm's chain, and the other
    firm's readers may not even learn of it."""
    await signed_up(browser, smtp, firm="Members Every Ltd")
    firm_id = await firm_id_of(browser)
    owner_email = await _email_of(browser)
    owner = {("user", (await user_and_firm(trail.engine, owner_email))[0])}
    elsewhere = new_browser()
    other_email = await signed_up(elsewhere, smtp, firm="Elsewhere Ltd")
    other_firm = await firm_id_of(elsewhere)
    await trail.mark()

    email = new_email()
    token = await invited(browser, smtp, email, "ADMIN")
    [entry] = await trail.recorded("inviteMember", firm_id)
    assert (entry.details, by([entry])) == ({"email": email, "role": "admin"}, owner)

    guest = new_browser()
    accepted = ok(await guest.gql(ACCEPT, {"t": token}))["acceptInvitation"]
    assert (accepted["firmId"], accepted["role"]) == (firm_id, "ADMIN")
    async with trail.engine.connect() as conn:
        guest_id = await conn.scalar(
            text("select id::text from users where email = :e"), {"e": email}
        )
    [entry] = await trail.recorded("acceptInvitation", firm_id)
    assert (targets([entry]), entry.details) == (
        [("user", guest_id)],
        {"role": "admin", "invitations": 0},
    )

    change = {"input": {"userId": guest_id, "role": "MEMBER"}}
    assert ok(await browser.gql(CHANGE, change))["changeMemberRole"]["member"]["role"] == "MEMBER"
    [entry] = await trail.recorded("changeMemberRole", firm_id)
    assert (targets([entry]), entry.details) == (
        [("user", guest_id)],
        {"from": "admin", "to": "member", "invitations": 0, "api_keys": 0},
    )

    assert ok(await browser.gql(REMOVE, {"u": guest_id}))["removeMember"]["ok"] is True
    [entry] = await trail.recorded("removeMember", firm_id)
    assert (targets([entry]), entry.details) == (
        [("user", guest_id)],
        {"role": "member", "sessions": 1, "invitations": 0},
    )

    # An invitation withdrawn: recorded naming it, and its link no longer works.
    withdrawn = new_email()
    withdrawn_token = await invited(browser, smtp, withdrawn, "MEMBER")
    await trail.expect(firm_id, RECORDS["inviteMember"])
    pending = ok(await browser.gql(INVITATIONS))["invitations"]
    [invitation] = [i for i in pending if i["email"] == withdrawn]
    revoked = ok(await browser.gql(REVOKE_INVITATION, {"id": invitation["id"]}))
    assert revoked["revokeInvitation"]["ok"] is True
    [entry] = await trail.recorded("revokeInvitation", firm_id)
    assert (targets([entry]), entry.details) == (
        [("invitation", invitation["id"])],
        {"email": withdrawn, "role": "member"},
    )
    assert codes(await new_browser().gql(ACCEPT, {"t": withdrawn_token})) == ["TOKEN_USED"]
    refused = await trail.added()  # a link refused is on the platform's chain
    assert {c: [e.action for e in es] for c, es in refused.items()} == {
        None: ["auth.token.refused"]
    }
    left = ok(await browser.gql(INVITATIONS))["invitations"]
    assert withdrawn not in [i["email"] for i in left]

    # A user of two firms switches from the one they joined to their own: recorded in the
    # firm left, and nothing in the firm joined.
    traveller = new_browser()
    token = await invited(browser, smtp, other_email, "VIEWER")
    await trail.expect(firm_id, RECORDS["inviteMember"])
    assert ok(await traveller.gql(ACCEPT, {"t": token}))["acceptInvitation"]["firmId"] == firm_id
    await trail.expect(firm_id, RECORDS["acceptInvitation"])
    left = await session_id(trail.engine, traveller.session_cookie)
    switched = ok(await traveller.gql(SWITCH, {"f": other_firm}))["switchFirm"]
    assert switched["firmId"] == other_firm
    entries = await trail.recorded("switchFirm", firm_id)
    assert targets(entries) == [("session", left)]

    await chain_verifies(browser)
    assert trail.covered == list(MEMBERSHIP)


# ---- 3. a refused call records nothing and changes nothing --------------------------------------


@dataclass(frozen=True)
class Refusal:
    mutation: str
    role: Role
    document: str
    variables: Callable[[Member], dict[str, Any]]
    code: str


REFUSALS = [
    Refusal(
        "createCounterparty",
        Role.VIEWER,
        CREATE_COUNTERPARTY,
        lambda _: {"input": {"name": "Refused Ltd", "kind": "OTHER"}},
        "FORBIDDEN",
    ),
    Refusal(
        "createApiKey",
        Role.OWNER,
        CREATE_KEY,
        lambda _: {"i": {"name": "No scopes", "scopes": []}},
        "BAD_USER_INPUT",
    ),
    Refusal("updateFirm", Role.MEMBER, UPDATE_FIRM, lambda _: {"n": "Renamed"}, "FORBIDDEN"),
    Refusal(
        "createTemplate",
        Role.MEMBER,
        CREATE_TEMPLATE,
        lambda _: {"i": template_input("Not mine", question("q1", "short_text"))},
        "FORBIDDEN",
    ),
    Refusal(
        "createDeclaration",
        Role.OWNER,
        "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
        "{ declaration { id } } }",
        lambda _: {
            "i": {
                "templateId": str(uuid.uuid4()),
                "recipientName": "Nobody",
                "recipientEmail": new_email(),
            }
        },
        "NOT_FOUND",
    ),
    Refusal(
        "generateEvidencePack",
        Role.VIEWER,
        GENERATE,
        lambda _: {"i": {"title": "Viewer's", **period()}},
        "FORBIDDEN",
    ),
    Refusal(
        "inviteMember",
        Role.ADMIN,
        "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }",
        lambda _: {"input": {"email": new_email(), "role": "OWNER"}},
        "FORBIDDEN",
    ),
    Refusal(
        "changeMemberRole",
        Role.OWNER,
        CHANGE,
        lambda me: {"input": {"userId": str(me.user_id), "role": "ADMIN"}},  # the last owner
        "BAD_USER_INPUT",
    ),
    Refusal("createAuditCheckpoint", Role.MEMBER, CHECKPOINT, lambda _: {}, "FORBIDDEN"),
]


async def firm_rows(engine: AsyncEngine, firm_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row the firm has, in every table with a firm_id (and its own row in firms), as
    text. Sessions are left out: a request moves its session's last_seen_at."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "select table_name from information_schema.columns "
                    "where table_schema = 'public' and column_name = 'firm_id' "
                    "and table_name <> 'sessions' order by table_name"
                )
            )
        ).scalars()
        found = {}
        for table in [*tables, "firms"]:  # names from the catalogue
            column = "id" if table == "firms" else "firm_id"
            rows = await conn.execute(
                text(f'select r::text from "{table}" r where {column} = :f order by 1'),
                {"f": firm_id},
            )
            found[table] = list(rows.scalars())
    return found


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: f"{r.mutation}-{r.role.value}")
async def test_a_refused_mutation_records_nothing_and_changes_nothing(
    refusal: Refusal,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    trail: Trail,
) -> None:
    """Refused before anything is written: the trail holds no entry of it (on any chain), and
    the firm's rows are as they were, so the trail and the records never disagree."""
    assert refusal.mutation in RECORDS
    owner = await members.create(Role.OWNER)
    actor = (
        owner
        if refusal.role is Role.OWNER
        else await members.create(refusal.role, firm_id=owner.firm_id)
    )
    before = await firm_rows(superuser_engine, owner.firm_id)
    await trail.mark()

    body = await gql(client, refusal.document, refusal.variables(actor), actor)
    assert codes(body) == [refusal.code], body
    assert body["data"] is None
    assert await trail.added() == {}
    assert await firm_rows(superuser_engine, owner.firm_id) == before
