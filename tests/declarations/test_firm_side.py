"""Declarations from the firm's side, through HTTP as the web app calls them: roles, the
lifecycle and its timestamps, fresh links, expiry, bulk sends, listing, pinned template
versions and tenant isolation."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app import calendar
from app.declarations.templates import load_builtins
from tests.browser import Browser, NewBrowser, browser_for, codes, link_token, new_email, signed_up
from tests.declarations.test_loop import FIT, FORM, LINK, SUBMIT, sent_declaration, valid_answers
from tests.evidence.support import audit_of
from tests.mail.smtp import SmtpServer

PI = next(b for b in load_builtins() if b.key == "pi_cover")

INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
ACCEPT = "mutation($t: String!) { acceptInvitation(token: $t) { userId firmId role } }"
FIRM = "{ firm { id name } }"
UPDATE_FIRM = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { name } } }"

FIELDS = """id status templateId templateVersion recipientName recipientEmail dueDate createdAt
  sentAt openedAt submittedAt revokedAt lastRemindedAt reminderCount linkExpiresAt"""
GET = "query($id: UUID!) { declaration(id: $id) { " + FIELDS + " } }"
LIST = """query($f: DeclarationFilterInput, $first: Int! = 20, $after: String) {
  declarations(filter: $f, first: $first, after: $after) {
    edges { cursor node { id status recipientName recipientEmail } }
    pageInfo { hasNextPage endCursor } } }"""
COUNTS = "{ declarationCounts { draft sent opened submitted expired revoked } }"
TEMPLATES = "{ templates { edges { node { id name version builtIn questions { id kind } } } } }"
TEMPLATE = "query($id: UUID!) { template(id: $id) { id version questions { id kind } } }"
CREATE_TEMPLATE = """mutation($i: TemplateInput!) { createTemplate(input: $i) {
  template { id name version builtIn questions { id kind } } } }"""
CREATE_VERSION = """mutation($t: UUID!, $i: TemplateInput!) {
  createTemplateVersion(templateId: $t, input: $i) { template { id version
  questions { id kind } } } }"""
CREATE = (
    "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) { declaration { "
    + FIELDS
    + " } } }"
)
SEND = "mutation($id: UUID!) { sendDeclaration(id: $id) { declaration { " + FIELDS + " } } }"
REMIND = "mutation($id: UUID!) { remindDeclaration(id: $id) { declaration { " + FIELDS + " } } }"
REISSUE = (
    "mutation($id: UUID!) { reissueDeclarationLink(id: $id) { declaration { " + FIELDS + " } } }"
)
REVOKE = "mutation($id: UUID!) { revokeDeclaration(id: $id) { declaration { " + FIELDS + " } } }"
BULK = """mutation($i: BulkDeclarationCreateInput!) { bulkCreateDeclarations(input: $i) {
  declarations { id status recipientName recipientEmail } } }"""
PINNED = """query($id: UUID!) { declaration(id: $id) { status templateVersion
  pinnedTemplate { version questions { id kind } } response { answers } } }"""


# ---- helpers shared with test_public.py -------------------------------------------------------


def ok(body: dict[str, Any]) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def templates_of(browser: Browser) -> list[dict[str, Any]]:
    """The first page of the templates ``browser``'s firm has."""
    return [edge["node"] for edge in ok(await browser.gql(TEMPLATES))["templates"]["edges"]]


def error_fields(body: dict[str, Any]) -> list[str]:
    """The per-field names of the first error (BAD_USER_INPUT)."""
    return [f["field"] for f in body["errors"][0]["extensions"].get("fields", [])]


async def firm_of(browser: Browser) -> dict[str, str]:
    firm: dict[str, str] = ok(await browser.gql(FIRM))["firm"]
    return firm


async def join(owner: Browser, smtp: SmtpServer, guest: Browser, role: str) -> Browser:
    """Invite a new address with ``role``; it accepts by the emailed link in ``guest``."""
    email = new_email()
    body = await owner.gql(INVITE, {"input": {"email": email, "role": role}})
    assert body == {"data": {"inviteMember": {"ok": True}}}, body
    token = await link_token(smtp, email, "You are invited")
    accepted = ok(await guest.gql(ACCEPT, {"t": token}))["acceptInvitation"]
    assert accepted["role"] == role, accepted
    return guest


def question(qid: str, kind: str, **options: Any) -> dict[str, Any]:
    return {"id": qid, "label": f"Question {qid}", "kind": kind, **options}


def template_input(name: str, *questions: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "audience": "PERSON",
        "questions": list(questions),
        "attestation": "I confirm that my answers are true.",
    }


async def create_template(browser: Browser, name: str, *questions: dict[str, Any]) -> str:
    created = ok(await browser.gql(CREATE_TEMPLATE, {"i": template_input(name, *questions)}))
    template: dict[str, Any] = created["createTemplate"]["template"]
    assert (template["version"], template["builtIn"]) == (1, False), template
    template_id: str = template["id"]
    return template_id


async def create(
    browser: Browser,
    *,
    name: str = "Pat Doe",
    email: str | None = None,
    template_id: str = str(FIT.id),
    due: date | None = None,
) -> dict[str, Any]:
    """A draft declaration; returns its fields."""
    variables: dict[str, Any] = {
        "templateId": template_id,
        "recipientName": name,
        "recipientEmail": email or new_email(),
    }
    if due is not None:
        variables["dueDate"] = due.isoformat()
    declaration: dict[str, Any] = ok(await browser.gql(CREATE, {"i": variables}))[
        "createDeclaration"
    ]["declaration"]
    assert declaration["status"] == "DRAFT", declaration
    return declaration


async def get(browser: Browser, declaration_id: str) -> dict[str, Any]:
    declaration: dict[str, Any] = ok(await browser.gql(GET, {"id": declaration_id}))["declaration"]
    return declaration


async def counts(browser: Browser) -> dict[str, int]:
    found: dict[str, int] = ok(await browser.gql(COUNTS))["declarationCounts"]
    return found


async def listed(
    browser: Browser, filters: dict[str, Any] | None = None, first: int = 100
) -> list[dict[str, Any]]:
    connection = ok(await browser.gql(LIST, {"f": filters, "first": first}))["declarations"]
    return [edge["node"] for edge in connection["edges"]]


def link_in(mail: Any) -> str:
    body = mail.get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(body)
    assert found, body
    return unquote(found.group(1))


async def nth_link(smtp: SmtpServer, email: str, n: int) -> str:
    """The link in the ``n``-th mail (from 1) to ``email``, once exactly ``n`` have arrived."""
    await smtp.wait_for(lambda _: len(smtp.to(email)) >= n)
    mails = smtp.to(email)
    assert len(mails) == n, [str(m["subject"]) for m in mails]
    return link_in(mails[n - 1])


async def form(browser: Browser, token: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(await browser.gql(FORM, {"t": token}))["recipientForm"]
    return found


def submission(answers: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "answers": answers,
        "attestationAccepted": True,
        "signatureName": "Pat Doe",
        **overrides,
    }


async def submit_valid(recipient: Browser, token: str) -> dict[str, Any]:
    questions = (await form(recipient, token))["questions"]
    done: dict[str, Any] = ok(
        await recipient.gql(SUBMIT, {"t": token, "i": submission(valid_answers(questions))})
    )["submitDeclaration"]
    return done


async def actions_on(engine: AsyncEngine, target_id: str) -> list[str]:
    """The audit actions recorded against one target, in chain order (RLS bypassed)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select action from audit_log where target_id = :id order by seq"),
            {"id": target_id},
        )
        return [row.action for row in rows]


async def refusal_details(engine: AsyncEngine, target_id: str) -> list[Any]:
    """The details of each refused link recorded against a declaration, in chain order."""
    entries = await audit_of(engine, target_id)
    return [entry.details for entry in entries if entry.action == "declaration.token_refused"]


async def stored(engine: AsyncEngine, firm_id: str) -> dict[str, int]:
    """What the firm has in the database (RLS bypassed): declarations, templates, audit rows."""
    async with engine.connect() as conn:
        found = {}
        for name, table in (
            ("declarations", "declarations"),
            ("templates", "declaration_templates"),
            ("versions", "template_versions"),
            ("forms", "declaration_forms"),
            ("audit", "audit_log"),
        ):
            query = text(f"select count(*) from {table} where firm_id = :f")
            found[name] = (await conn.execute(query, {"f": firm_id})).scalar_one()
        return found


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def cursor(raw: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


# ---- 1. roles -----------------------------------------------------------------------------------


async def test_viewers_read_members_act_and_admins_author_templates(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    await signed_up(browser, smtp, firm="Roles Ltd")
    firm_id = (await firm_of(browser))["id"]
    viewer = await join(browser, smtp, new_browser(), "VIEWER")
    member = await join(browser, smtp, new_browser(), "MEMBER")
    admin = await join(browser, smtp, new_browser(), "ADMIN")

    draft = await create(browser, name="Draft Person")
    sent_email = new_email()
    sent_id, _ = await sent_declaration(browser, smtp, sent_email)

    # A viewer reads everything.
    assert {d["id"] for d in await listed(viewer)} == {draft["id"], sent_id}
    assert (await get(viewer, sent_id))["status"] == "SENT"
    assert (await get(viewer, draft["id"]))["recipientName"] == "Draft Person"
    before_counts = await counts(viewer)
    assert before_counts == {
        "draft": 1,
        "sent": 1,
        "opened": 0,
        "submitted": 0,
        "expired": 0,
        "revoked": 0,
    }
    templates = await templates_of(viewer)
    assert {t["id"] for t in templates} >= {str(b.id) for b in load_builtins()}
    before_rows = await stored(superuser_engine, firm_id)

    # ... and may change nothing.
    bulk_emails = [new_email(), new_email()]
    refused = {
        "createDeclaration": await viewer.gql(
            CREATE,
            {
                "i": {
                    "templateId": str(FIT.id),
                    "recipientName": "Nope",
                    "recipientEmail": new_email(),
                }
            },
        ),
        "sendDeclaration": await viewer.gql(SEND, {"id": draft["id"]}),
        "remindDeclaration": await viewer.gql(REMIND, {"id": sent_id}),
        "reissueDeclarationLink": await viewer.gql(REISSUE, {"id": sent_id}),
        "revokeDeclaration": await viewer.gql(REVOKE, {"id": sent_id}),
        "bulkCreateDeclarations": await viewer.gql(
            BULK,
            {
                "i": {
                    "templateId": str(FIT.id),
                    "recipients": [{"name": "B", "email": e} for e in bulk_emails],
                }
            },
        ),
        "createTemplate": await viewer.gql(
            CREATE_TEMPLATE, {"i": template_input("Viewer's", question("q1", "short_text"))}
        ),
    }
    for field, body in refused.items():
        assert codes(body) == ["FORBIDDEN"], (field, body)
        assert body["data"] is None, (field, body)
    assert await counts(viewer) == before_counts
    assert await stored(superuser_engine, firm_id) == before_rows
    assert (await get(browser, draft["id"]))["status"] == "DRAFT"
    after_sent = await get(browser, sent_id)
    assert (after_sent["status"], after_sent["reminderCount"]) == ("SENT", 0)

    # An admin authors templates; a member may not.
    template_id = await create_template(admin, "Admin's own", question("q1", "short_text"))
    before_rows = await stored(superuser_engine, firm_id)
    assert before_rows["templates"] == 1
    assert before_rows["versions"] == 1
    by_member = {
        "createTemplate": await member.gql(
            CREATE_TEMPLATE, {"i": template_input("Member's", question("q1", "short_text"))}
        ),
        "createTemplateVersion": await member.gql(
            CREATE_VERSION,
            {"t": template_id, "i": template_input("Changed", question("q9", "yes_no"))},
        ),
    }
    for field, body in by_member.items():
        assert codes(body) == ["FORBIDDEN"], (field, body)
    assert await stored(superuser_engine, firm_id) == before_rows
    unchanged = ok(await viewer.gql(TEMPLATE, {"id": template_id}))["template"]
    assert (unchanged["version"], unchanged["questions"]) == (
        1,
        [{"id": "q1", "kind": "SHORT_TEXT"}],
    )
    custom = [t for t in await templates_of(viewer) if not t["builtIn"]]
    assert [(t["id"], t["name"]) for t in custom] == [(template_id, "Admin's own")]

    # A member creates, sends, reminds and revokes.
    member_email = new_email()
    mine = await create(member, email=member_email, template_id=template_id)
    sent = ok(await member.gql(SEND, {"id": mine["id"]}))["sendDeclaration"]["declaration"]
    assert sent["status"] == "SENT"
    reminded = ok(await member.gql(REMIND, {"id": mine["id"]}))["remindDeclaration"]
    assert reminded["declaration"]["reminderCount"] == 1
    revoked = ok(await member.gql(REVOKE, {"id": mine["id"]}))["revokeDeclaration"]
    assert revoked["declaration"]["status"] == "REVOKED"
    await nth_link(smtp, member_email, 2)

    # Nothing the viewer was refused was ever mailed.
    assert len(smtp.to(sent_email)) == 1
    assert [smtp.to(e) for e in bulk_emails] == [[], []]


# ---- 2. lifecycle -------------------------------------------------------------------------------


async def test_draft_sent_opened_submitted_and_revoked_with_their_timestamps(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    await signed_up(browser, smtp, firm="Lifecycle Ltd")
    email = new_email()
    draft = await create(browser, email=email)
    assert [draft[k] for k in ("sentAt", "openedAt", "submittedAt", "revokedAt")] == [None] * 4
    assert draft["linkExpiresAt"] is None

    sent = ok(await browser.gql(SEND, {"id": draft["id"]}))["sendDeclaration"]["declaration"]
    assert sent["status"] == "SENT"
    assert sent["sentAt"] is not None
    assert sent["linkExpiresAt"] is not None
    assert (sent["openedAt"], sent["submittedAt"], sent["revokedAt"]) == (None, None, None)
    assert moment(sent["sentAt"]) >= moment(draft["createdAt"])
    token = await nth_link(smtp, email, 1)

    again = await browser.gql(SEND, {"id": draft["id"]})
    assert codes(again) == ["BAD_USER_INPUT"], again
    assert (await get(browser, draft["id"]))["sentAt"] == sent["sentAt"]

    recipient = browser_for(auth_app)
    async with recipient.client:
        questions = (await form(recipient, token))["questions"]
        opened = await get(browser, draft["id"])
        assert opened["status"] == "OPENED"
        assert opened["openedAt"] is not None
        assert moment(opened["openedAt"]) >= moment(sent["sentAt"])
        assert opened["submittedAt"] is None
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission(valid_answers(questions))})
        assert "errors" not in done, done

    submitted = await get(browser, draft["id"])
    assert submitted["status"] == "SUBMITTED"
    assert submitted["submittedAt"] == done["data"]["submitDeclaration"]["submittedAt"]
    assert moment(submitted["submittedAt"]) >= moment(opened["openedAt"])
    assert (submitted["sentAt"], submitted["openedAt"]) == (sent["sentAt"], opened["openedAt"])
    assert submitted["revokedAt"] is None

    for refused in (
        await browser.gql(SEND, {"id": draft["id"]}),
        await browser.gql(REVOKE, {"id": draft["id"]}),
    ):
        assert codes(refused) == ["BAD_USER_INPUT"], refused
    after = await get(browser, draft["id"])
    assert (after["status"], after["revokedAt"]) == ("SUBMITTED", None)
    await smtp.wait_for(lambda _: len(smtp.to(email)) >= 2)  # the link, then the confirmation
    assert [str(m["subject"]).split(":")[0] for m in smtp.to(email)][1:] == ["Received"]

    # Revoking a sent declaration kills its link.
    other_email = new_email()
    other_id, other_token = await sent_declaration(browser, smtp, other_email)
    revoked = ok(await browser.gql(REVOKE, {"id": other_id}))["revokeDeclaration"]["declaration"]
    assert revoked["status"] == "REVOKED"
    assert revoked["revokedAt"] is not None
    assert moment(revoked["revokedAt"]) >= moment(revoked["sentAt"])
    assert (revoked["openedAt"], revoked["submittedAt"]) == (None, None)
    recipient = browser_for(auth_app)
    async with recipient.client:
        assert codes(await recipient.gql(FORM, {"t": other_token})) == ["TOKEN_INVALID"]
        refused = await recipient.gql(SUBMIT, {"t": other_token, "i": submission({})})
        assert codes(refused) == ["TOKEN_INVALID"]
    assert (await get(browser, other_id))["status"] == "REVOKED"
    for body in (
        await browser.gql(SEND, {"id": other_id}),
        await browser.gql(REVOKE, {"id": other_id}),
        await browser.gql(REMIND, {"id": other_id}),
    ):
        assert codes(body) == ["BAD_USER_INPUT"], body
    assert len(smtp.to(other_email)) == 1


# ---- 3. fresh links -----------------------------------------------------------------------------


async def test_remind_and_reissue_each_mail_a_new_link_and_kill_the_old_one(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Links Ltd")
    email = new_email()
    declaration_id, first = await sent_declaration(browser, smtp, email)

    reminded = ok(await browser.gql(REMIND, {"id": declaration_id}))["remindDeclaration"]
    assert reminded["declaration"]["reminderCount"] == 1
    assert reminded["declaration"]["lastRemindedAt"] is not None
    second = await nth_link(smtp, email, 2)
    assert str(smtp.to(email)[1]["subject"]).startswith("Reminder:")

    reminded = ok(await browser.gql(REMIND, {"id": declaration_id}))["remindDeclaration"]
    assert reminded["declaration"]["reminderCount"] == 2
    third = await nth_link(smtp, email, 3)

    reissued = ok(await browser.gql(REISSUE, {"id": declaration_id}))["reissueDeclarationLink"]
    assert reissued["declaration"]["status"] == "SENT"
    assert reissued["declaration"]["reminderCount"] == 2
    fourth = await nth_link(smtp, email, 4)
    assert len({first, second, third, fourth}) == 4

    recipient = browser_for(auth_app)
    async with recipient.client:
        for old in (first, second, third):
            for refused in (
                await recipient.gql(FORM, {"t": old}),
                await recipient.gql(SUBMIT, {"t": old, "i": submission({})}),
            ):
                assert codes(refused) == ["TOKEN_INVALID"]
                assert refused["errors"][0]["message"].startswith(
                    "This link has been replaced by a newer one: use the link in the most recent"
                )
        assert (await form(recipient, fourth))["recipientName"] == "Pat Doe"
        await submit_valid(recipient, fourth)
        # Once answered, an old link says so: the newest one it sent them to is used.
        answered = await recipient.gql(FORM, {"t": first})
        assert codes(answered) == ["TOKEN_INVALID"]
        assert answered["errors"][0]["message"] == (
            "This request has already been answered. If you did not answer it, tell the firm "
            "that sent it at once."
        )
    read = await get(browser, declaration_id)
    assert (read["status"], read["reminderCount"]) == ("SUBMITTED", 2)

    assert await actions_on(superuser_engine, declaration_id) == [
        "declaration.created",
        "declaration.sent",
        "declaration.reminded",
        "declaration.reminded",
        "declaration.link_reissued",
        "declaration.token_refused",  # the old links tried: once, whichever and however often
        "declaration.opened",
        "declaration.submitted",
        "declaration.token_refused",
    ]
    assert await refusal_details(superuser_engine, declaration_id) == [
        {"code": "TOKEN_INVALID", "link": "replaced"},
        {"code": "TOKEN_INVALID", "link": "answered"},
    ]


async def test_a_withdrawn_link_says_so_and_is_on_the_record_and_an_unknown_one_is_not(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """Revoking a sent declaration withdraws its link: its recipient is told the request was
    withdrawn (still TOKEN_INVALID), and the attempt goes on the declaration's record, as an
    old link's does once replaced. A link never issued is just not valid: nothing names a
    firm whose record it could go on."""
    await signed_up(browser, smtp, firm="Withdrawn Ltd")
    email = new_email()
    declaration_id, first = await sent_declaration(browser, smtp, email)
    assert ok(await browser.gql(REMIND, {"id": declaration_id}))  # the first link replaced
    second = await nth_link(smtp, email, 2)
    assert ok(await browser.gql(REVOKE, {"id": declaration_id}))
    recipient = browser_for(auth_app)
    async with recipient.client:
        refused = [await recipient.gql(FORM, {"t": token}) for token in (first, second)]
        unknown = await recipient.gql(
            FORM, {"t": first[:-4] + ("B" if first[-4] == "A" else "A") * 4}
        )
    for answer in [*refused, unknown]:
        assert codes(answer) == ["TOKEN_INVALID"]
    # The replaced link too: the request it would lead to is withdrawn.
    assert [answer["errors"][0]["message"] for answer in refused] == [
        "This request has been withdrawn by the firm that sent it."
    ] * 2
    assert unknown["errors"][0]["message"] == "This link is not valid."
    assert (await actions_on(superuser_engine, declaration_id))[-2:] == [
        "declaration.revoked",
        "declaration.token_refused",
    ]
    assert await refusal_details(superuser_engine, declaration_id) == [
        {"code": "TOKEN_INVALID", "link": "withdrawn"}
    ]


# ---- 4. expiry ----------------------------------------------------------------------------------


async def test_an_expired_link_is_refused_and_listed_and_counted_as_expired(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Expiry Ltd")
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    live_id, _ = await sent_declaration(browser, smtp, new_email())
    recipient = browser_for(auth_app)
    async with recipient.client:
        answers = valid_answers((await form(recipient, token))["questions"])
        assert (await counts(browser))["opened"] == 1

        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("update declarations set token_expires_at = :t where id = :id"),
                {"t": datetime.now(UTC) - timedelta(minutes=1), "id": declaration_id},
            )

        assert codes(await recipient.gql(FORM, {"t": token})) == ["TOKEN_EXPIRED"]
        refused = await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)})
        assert codes(refused) == ["TOKEN_EXPIRED"]

    assert (await get(browser, declaration_id))["status"] == "EXPIRED"
    assert [d["id"] for d in await listed(browser, {"status": "EXPIRED"})] == [declaration_id]
    assert [d["id"] for d in await listed(browser, {"status": "SENT"})] == [live_id]
    assert await counts(browser) == {
        "draft": 0,
        "sent": 1,
        "opened": 0,
        "submitted": 0,
        "expired": 1,
        "revoked": 0,
    }
    assert "declaration.submitted" not in await actions_on(superuser_engine, declaration_id)


async def test_each_link_lasts_the_days_the_declaration_was_created_with(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """linkDays, given when the declaration is created, holds for every link it is sent (the
    first, a reminder's, a reissue's, and each of a bulk send's); without it, the default; never
    past the due date plus its grace period."""
    settings = auth_app.state.coverproof.settings
    await signed_up(browser, smtp, firm="Lifetimes Ltd")

    def lasts(declaration: dict[str, Any], days: float) -> None:
        # Within a minute: the expiry is counted from when the link was made.
        left = moment(declaration["linkExpiresAt"]) - datetime.now(UTC)
        assert timedelta(days=days, minutes=-1) < left <= timedelta(days=days), declaration

    variables = {"templateId": str(FIT.id), "recipientName": "Pat Doe", "linkDays": 3}
    draft = ok(await browser.gql(CREATE, {"i": {**variables, "recipientEmail": new_email()}}))[
        "createDeclaration"
    ]["declaration"]
    assert draft["linkExpiresAt"] is None
    for mutation in (SEND, REMIND, REISSUE):
        changed = ok(await browser.gql(mutation, {"id": draft["id"]}))
        lasts(next(iter(changed.values()))["declaration"], 3)

    default = await create(browser)
    sent = ok(await browser.gql(SEND, {"id": default["id"]}))["sendDeclaration"]["declaration"]
    lasts(sent, settings.declaration_token_days)

    due = datetime.now(UTC).date() + timedelta(days=1)
    capped = ok(
        await browser.gql(
            CREATE,
            {
                "i": {
                    **variables,
                    "linkDays": 30,
                    "dueDate": due.isoformat(),
                    "recipientEmail": new_email(),
                }
            },
        )
    )["createDeclaration"]["declaration"]
    sent = ok(await browser.gql(SEND, {"id": capped["id"]}))["sendDeclaration"]["declaration"]
    # The last moment of the grace period's last day in London (where the firm's days are).
    last_day = due + timedelta(days=settings.declaration_grace_days)
    latest = datetime.combine(last_day, datetime.max.time(), ZoneInfo("Europe/London"))
    assert moment(sent["linkExpiresAt"]) == latest.astimezone(UTC)

    bulk = {
        "templateId": str(FIT.id),
        "linkDays": 5,
        "recipients": [{"name": "A", "email": new_email()}],
    }
    (made,) = ok(await browser.gql(BULK, {"i": bulk}))["bulkCreateDeclarations"]["declarations"]
    lasts(await get(browser, made["id"]), 5)


async def test_a_due_date_has_passed_once_its_day_has_ended_in_london(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The firm's days are London's: at 00:30 on 1 July there (23:30 UTC on 30 June), a
    declaration due on 30 June is refused, by the one and the bulk create alike."""
    await signed_up(browser, smtp, firm="Due Dates Ltd")
    monkeypatch.setattr(calendar, "now", lambda: datetime(2026, 6, 30, 23, 30, tzinfo=UTC))
    for due, passed in (("2026-06-30", True), ("2026-07-01", False)):
        one = {"templateId": str(FIT.id), "recipientName": "Pat Doe", "dueDate": due}
        bulk = {
            "templateId": str(FIT.id),
            "dueDate": due,
            "send": False,
            "recipients": [{"name": "A", "email": new_email()}],
        }
        for mutation, variables in ((CREATE, {**one, "recipientEmail": new_email()}), (BULK, bulk)):
            body = await browser.gql(mutation, {"i": variables})
            if passed:
                assert codes(body) == ["BAD_USER_INPUT"], body
                assert error_fields(body) == ["dueDate"], body
            else:
                ok(body)


# ---- 5. bulk ------------------------------------------------------------------------------------


async def test_bulk_create_sends_to_everyone_or_to_no_one(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Bulk Ltd")
    firm_id = (await firm_of(browser))["id"]
    people = [(f"Person {n}", new_email()) for n in range(3)]
    body = await browser.gql(
        BULK,
        {
            "i": {
                "templateId": str(FIT.id),
                "recipients": [{"name": n, "email": e} for n, e in people],
            }
        },
    )
    created = ok(body)["bulkCreateDeclarations"]["declarations"]
    assert [(d["recipientName"], d["recipientEmail"], d["status"]) for d in created] == [
        (n, e, "SENT") for n, e in people
    ]
    assert len({d["id"] for d in created}) == 3
    assert (await counts(browser))["sent"] == 3
    tokens = [await nth_link(smtp, e, 1) for _, e in people]
    assert len(set(tokens)) == 3
    recipient = browser_for(auth_app)
    async with recipient.client:
        for (name, _), token in zip(people, tokens, strict=True):
            assert (await form(recipient, token))["recipientName"] == name
    assert (await counts(browser))["opened"] == 3
    assert {d["id"] for d in await listed(browser)} == {d["id"] for d in created}

    before_counts, before_rows = await counts(browser), await stored(superuser_engine, firm_id)
    valid = [new_email(), new_email()]
    body = await browser.gql(
        BULK,
        {
            "i": {
                "templateId": str(FIT.id),
                "recipients": [
                    {"name": "Valid One", "email": valid[0]},
                    {"name": "Broken", "email": "not-an-email"},
                    {"name": "Valid Two", "email": valid[1]},
                ],
            }
        },
    )
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["data"] is None
    assert await counts(browser) == before_counts
    assert await stored(superuser_engine, firm_id) == before_rows
    with pytest.raises(AssertionError, match="not met within"):
        await smtp.wait_for(lambda _: any(smtp.to(e) for e in valid), timeout=2.0)


# ---- 6. listing ---------------------------------------------------------------------------------


async def test_listing_pages_newest_first_and_filters(browser: Browser, smtp: SmtpServer) -> None:
    await signed_up(browser, smtp, firm="Listing Ltd")
    today = datetime.now(UTC).date()
    plan: list[tuple[str, str, date | None]] = [
        ("Alice Smith", str(FIT.id), today + timedelta(days=10)),
        ("Bob Jones", str(FIT.id), today + timedelta(days=20)),
        ("Dave Under_score", str(PI.id), today + timedelta(days=30)),
        ("Erin Brown", str(PI.id), None),
    ]
    made = [await create(browser, name=name, template_id=tid, due=due) for name, tid, due in plan]
    assert await listed(browser, {"search": "%"}) == []
    made.append(await create(browser, name="Carol 100% Ltd", template_id=str(FIT.id)))
    ids = [d["id"] for d in made]
    for sent in (made[0], made[3]):
        ok(await browser.gql(SEND, {"id": sent["id"]}))

    # Pages of two, newest first, no duplicates, until hasNextPage is false.
    seen: list[str] = []
    pages: list[int] = []
    after: str | None = None
    while True:
        page = ok(await browser.gql(LIST, {"first": 2, "after": after}))["declarations"]
        seen += [e["node"]["id"] for e in page["edges"]]
        pages.append(len(page["edges"]))
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert len(pages) < 5, seen
    assert pages == [2, 2, 1]
    assert seen == list(reversed(ids))
    past_end = ok(await browser.gql(LIST, {"first": 2, "after": after}))["declarations"]
    assert past_end == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}

    # Page size and cursor are checked.
    for first in (101, 0, -1):
        body = await browser.gql(LIST, {"first": first})
        assert codes(body) == ["BAD_USER_INPUT"], (first, body)
        assert error_fields(body) == ["first"], body
    assert len(await listed(browser, first=100)) == 5
    bad_cursors = [
        "garbage",
        "!!!!",
        "",
        cursor("just a string"),
        cursor([1, 2]),
        cursor(["2026-01-01T00:00:00+00:00"]),
        cursor(["not a time", str(uuid.uuid4())]),
        cursor(["2026-01-01T00:00:00+00:00", "not-a-uuid"]),
        cursor({"created": "2026-01-01T00:00:00+00:00", "id": str(uuid.uuid4())}),
        cursor(["2026-01-01T00:00:00+00:00", str(uuid.uuid4()), 3]),
        cursor(None),
    ]
    for bad in bad_cursors:
        body = await browser.gql(LIST, {"first": 2, "after": bad})
        assert codes(body) == ["BAD_USER_INPUT"], (bad, body)
        assert error_fields(body) == ["after"], (bad, body)

    # Filters.
    def names(found: list[dict[str, Any]]) -> list[str]:
        return [d["recipientName"] for d in found]

    assert names(await listed(browser, {"status": "SENT"})) == ["Erin Brown", "Alice Smith"]
    assert names(await listed(browser, {"status": "DRAFT"})) == [
        "Carol 100% Ltd",
        "Dave Under_score",
        "Bob Jones",
    ]
    assert await listed(browser, {"status": "SUBMITTED"}) == []
    assert names(await listed(browser, {"templateId": str(FIT.id)})) == [
        "Carol 100% Ltd",
        "Bob Jones",
        "Alice Smith",
    ]
    assert names(await listed(browser, {"templateId": str(PI.id)})) == [
        "Erin Brown",
        "Dave Under_score",
    ]
    assert names(await listed(browser, {"templateId": str(uuid.uuid4())})) == []
    assert names(await listed(browser, {"search": "aLiCe"})) == ["Alice Smith"]
    assert names(await listed(browser, {"search": "  JONES  "})) == ["Bob Jones"]
    assert names(await listed(browser, {"search": made[3]["recipientEmail"].upper()})) == [
        "Erin Brown"
    ]
    assert len(await listed(browser, {"search": "@EXAMPLE.TEST"})) == 5
    assert names(await listed(browser, {"search": "%"})) == ["Carol 100% Ltd"]
    assert names(await listed(browser, {"search": "_"})) == ["Dave Under_score"]
    assert names(await listed(browser, {"search": "Smith%"})) == []
    assert names(await listed(browser, {"search": "nobody-here"})) == []
    due_20 = (today + timedelta(days=20)).isoformat()
    assert names(await listed(browser, {"dueBefore": due_20})) == ["Alice Smith"]
    due_31 = (today + timedelta(days=31)).isoformat()
    assert names(await listed(browser, {"dueBefore": due_31})) == [
        "Dave Under_score",
        "Bob Jones",
        "Alice Smith",
    ]
    combined = {"status": "DRAFT", "templateId": str(FIT.id), "search": "o"}
    assert names(await listed(browser, combined)) == ["Carol 100% Ltd", "Bob Jones"]


async def test_listing_refuses_hostile_cursors_as_bad_input_not_as_a_server_error(
    browser: Browser, smtp: SmtpServer
) -> None:
    """Cursors that decode but that no list issued: out-of-range times, deep nesting, an id
    that is not text."""
    await signed_up(browser, smtp, firm="Cursors Ltd")
    await create(browser)
    hostile = {
        "after year 9999 in UTC": cursor(["9999-12-31T23:59:59-12:00", str(uuid.uuid4())]),
        "before year 1 in UTC": cursor(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
        "deeply nested": base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
        "a number for the id": cursor(["2030-01-01T00:00:00+00:00", 1]),
        "an object for the id": cursor(["2030-01-01T00:00:00+00:00", {}]),
    }
    for name, bad in hostile.items():
        body = await browser.gql(LIST, {"first": 2, "after": bad})
        assert codes(body) == ["BAD_USER_INPUT"], (name, body)
        assert error_fields(body) == ["after"], (name, body)


# ---- 7. pinning ---------------------------------------------------------------------------------


async def test_a_sent_declaration_keeps_the_template_version_it_was_sent_with(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp, firm="Pinning Ltd")
    admin = await join(browser, smtp, new_browser(), "ADMIN")
    template_id = await create_template(admin, "Pinned", question("q1", "short_text"))
    email = new_email()
    declaration_id, token = await sent_declaration(admin, smtp, email, template_id)

    changed = await admin.gql(
        CREATE_VERSION,
        {
            "t": template_id,
            "i": template_input("Pinned", question("q1", "yes_no"), question("q2", "short_text")),
        },
    )
    v2 = ok(changed)["createTemplateVersion"]["template"]
    assert v2["version"] == 2
    assert v2["questions"] == [{"id": "q1", "kind": "YES_NO"}, {"id": "q2", "kind": "SHORT_TEXT"}]
    assert ok(await admin.gql(TEMPLATE, {"id": template_id}))["template"]["version"] == 2

    recipient = browser_for(auth_app)
    async with recipient.client:
        body = await recipient.gql(
            """query($t: String!) { recipientForm(token: $t) { templateVersion
               questions { id kind } } }""",
            {"t": token},
        )
        assert ok(body)["recipientForm"] == {
            "templateVersion": 1,
            "questions": [{"id": "q1", "kind": "SHORT_TEXT"}],
        }
        for_v2 = {"q1": True, "q2": "Only version 2 asks this"}
        refused = await recipient.gql(SUBMIT, {"t": token, "i": submission(for_v2)})
        assert codes(refused) == ["BAD_USER_INPUT"], refused
        assert sorted(error_fields(refused)) == ["answers.q1", "answers.q2"]
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission({"q1": "Pat"})})
        assert "errors" not in done, done

    pinned = ok(await browser.gql(PINNED, {"id": declaration_id}))["declaration"]
    assert pinned == {
        "status": "SUBMITTED",
        "templateVersion": 1,
        "pinnedTemplate": {"version": 1, "questions": [{"id": "q1", "kind": "SHORT_TEXT"}]},
        "response": {"answers": {"q1": "Pat"}},
    }
    newer = await create(admin, template_id=template_id)
    assert newer["templateVersion"] == 2


# ---- 8. tenant isolation ------------------------------------------------------------------------


async def test_another_firm_can_neither_see_nor_touch_a_firms_declarations_or_templates(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
) -> None:
    await signed_up(browser, smtp, firm="Firm A Ltd")
    firm_a = (await firm_of(browser))["id"]
    other = new_browser()
    await signed_up(other, smtp, firm="Firm B Ltd")
    firm_b = (await firm_of(other))["id"]
    assert firm_a != firm_b

    template_a = await create_template(browser, "A's private template", question("qa", "date"))
    email_a = f"zebedee-{uuid.uuid4().hex[:8]}@example.test"
    created = await create(browser, name="Zebedee Quartz", email=email_a, template_id=template_a)
    declaration_a = created["id"]
    ok(await browser.gql(SEND, {"id": declaration_a}))
    token_a = await nth_link(smtp, email_a, 1)
    before_a = await get(browser, declaration_a)
    rows_a = await stored(superuser_engine, firm_a)
    own_b = await create(other, name="Own B")

    # Firm B sees none of it.
    assert codes(await other.gql(GET, {"id": declaration_a})) == ["NOT_FOUND"]
    assert codes(await other.gql(PINNED, {"id": declaration_a})) == ["NOT_FOUND"]
    assert [d["id"] for d in await listed(other)] == [own_b["id"]]
    for filters in (
        {"search": "Zebedee"},
        {"search": email_a},
        {"search": email_a.upper()},
        {"templateId": template_a},
        {"status": "SENT"},
        {"status": "SENT", "search": "Quartz", "templateId": template_a},
        {"dueBefore": (datetime.now(UTC).date() + timedelta(days=3650)).isoformat()},
    ):
        assert await listed(other, filters) == [], filters
    assert codes(await other.gql(TEMPLATE, {"id": template_a})) == ["NOT_FOUND"]
    templates_b = await templates_of(other)
    assert template_a not in {t["id"] for t in templates_b}
    assert [t for t in templates_b if not t["builtIn"]] == []
    assert (await counts(other))["sent"] == 0

    # ... and can change none of it.
    for mutation in (SEND, REMIND, REISSUE, REVOKE):
        body = await other.gql(mutation, {"id": declaration_a})
        assert codes(body) == ["NOT_FOUND"], (mutation, body)
    using_a_template = await other.gql(
        CREATE,
        {"i": {"templateId": template_a, "recipientName": "X", "recipientEmail": new_email()}},
    )
    assert codes(using_a_template) == ["NOT_FOUND"], using_a_template
    bulk = await other.gql(
        BULK,
        {"i": {"templateId": template_a, "recipients": [{"name": "X", "email": new_email()}]}},
    )
    assert codes(bulk) == ["NOT_FOUND"], bulk
    version = await other.gql(
        CREATE_VERSION, {"t": template_a, "i": template_input("Hijack", question("qb", "date"))}
    )
    assert codes(version) == ["NOT_FOUND"], version

    assert await get(browser, declaration_a) == before_a
    assert await stored(superuser_engine, firm_a) == rows_a
    assert ok(await browser.gql(TEMPLATE, {"id": template_a}))["template"]["version"] == 1
    assert len(smtp.to(email_a)) == 1
    recipient = browser_for(auth_app)
    async with recipient.client:
        assert (await form(recipient, token_a))["firmName"] == "Firm A Ltd"
    assert [d["id"] for d in await listed(other)] == [own_b["id"]]


@pytest.mark.parametrize(
    "name",
    [
        "Annual\n\nIMPORTANT: open https://forms.example instead",
        "Annual review \u202etxt.exe",
        "Annual review, see https://forms.example",
        "Annual review at www.forms.example",
        "Acme Ltd. Urgent: re-verify at coverproof-secure.example/login",
        "Annual review, queries to ex\u0430mple.com",
        "Annual review: reply to help@forms.example",
        "Annual review at 192.0.2.1",
        "Annual review -forms.example/login",
        "Annual review at forms\u00ad.example",
        "Annual review at " + "".join(chr(ord(c) + 0xFEE0) for c in "forms.example"),
        "Annual review at forms.xn--p1ai",
        "Annual review\u0085IMPORTANT: open the attachment",
    ],
    ids=[
        "line-break",
        "bidi-override",
        "url",
        "www",
        "domain",
        "idn-domain",
        "address",
        "ip",
        "after-hyphen",
        "soft-hyphen",
        "fullwidth",
        "punycode",
        "next-line",
    ],
)
async def test_a_name_a_mail_would_carry_is_one_line_with_no_web_address(
    browser: Browser, smtp: SmtpServer, name: str
) -> None:
    """A firm's name and its forms' names go into the mails sent from our address: a second
    paragraph, a reordering control or a link there would read as ours (a phishing mail that
    passes our domain's checks)."""
    await signed_up(browser, smtp, firm="Plain Names Ltd")
    template = template_input(name, question("q1", "short_text"))
    assert codes(await browser.gql(CREATE_TEMPLATE, {"i": template})) == ["BAD_USER_INPUT"]
    template_id = await create_template(browser, "Annual review", question("q1", "short_text"))
    version = await browser.gql(CREATE_VERSION, {"t": template_id, "i": template})
    assert codes(version) == ["BAD_USER_INPUT"], version
    assert codes(await browser.gql(UPDATE_FIRM, {"n": name})) == ["BAD_USER_INPUT"]
    assert (await firm_of(browser))["name"] == "Plain Names Ltd"


async def test_a_line_break_in_a_firms_or_forms_name_never_stops_a_link_or_a_submission(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """Mail subjects carry the firm's and the form's names, and the outbox refuses a subject on
    two lines: names held before they were held to one line (or changed by hand) are put on
    one, or every send and every submission would fail. Nor may such a name add a paragraph of
    its own to a mail sent from our address, or reorder what follows it (bidi controls)."""
    await signed_up(browser, smtp, firm="Broken Lines Ltd")
    body = await browser.gql(UPDATE_FIRM, {"n": "Broken\nLines Ltd"})
    assert codes(body) == ["BAD_USER_INPUT"], body
    template_id = await create_template(browser, "Annual review", question("q1", "short_text"))
    forged = "Annual\n\nIMPORTANT: your link has moved.\u202e\r\nreview"
    firm_id = (await firm_of(browser))["id"]
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("update firms set name = :n where id = :f"),
            {"n": "Broken\r\nLines Ltd", "f": firm_id},
        )
        await conn.execute(
            text("update declaration_templates set name = :n where id = :t"),
            {"n": forged, "t": template_id},
        )
    email = new_email()
    _, token = await sent_declaration(browser, smtp, email, template_id)
    recipient = browser_for(auth_app)
    async with recipient.client:
        form_fields = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        done = await recipient.gql(
            SUBMIT, {"t": token, "i": submission(valid_answers(form_fields["questions"]))}
        )
    assert "errors" not in done, done
    await smtp.wait_for(lambda _: len(smtp.to(email)) == 2)
    one_line = "Annual IMPORTANT: your link has moved. review"
    mails = smtp.to(email)
    assert [str(m["subject"]) for m in mails] == [
        f"Broken Lines Ltd asks you to complete: {one_line}",
        f"Received: your {one_line} for Broken Lines Ltd",
    ]
    for mail in mails:
        text_part = mail.get_body(preferencelist=("plain",))
        assert text_part is not None
        first = text_part.get_content().split("\n\n")[0]
        assert one_line in first, first
        assert "Broken Lines Ltd" in first, first
        assert "\u202e" not in text_part.get_content()


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("attestation", "I \u202eton\u202c agree that my answers are true."),
        ("label", "Have you \u2067ever\u2069 been convicted?"),
        ("help", "Say \u202dwhen\u202c."),
        ("choice", "Yes\u202e"),
        ("explain_label", "Why\u2066 not"),
        ("label", "Ever\nconvicted?"),
        ("attestation", "I confirm\x1b[2K."),
        ("label", "Ever\u0085convicted?"),
        ("help", "Line one.\u2028Line two."),
        ("attestation", "I confirm \u200fthat\u200f."),
        ("attestation", "I confirm." + "".join(chr(0xE0000 + ord(c)) for c in " and I waive")),
        ("label", "Ever con\u00advicted?"),
        ("attestation", "I con\u200cfi\u200dr\u200cm."),  # bits in joiners between letters
        ("label", "\u0641\u200c\u200c\u0627?"),  # a run of them
        ("choice", "Yes\ufe0f\ufe0f"),
        ("label", "Ever\u2065?"),  # unassigned, and shown as nothing
        ("name", "Annual\u200breview"),
    ],
)
async def test_what_a_form_says_is_shown_as_it_is_stored(
    browser: Browser, smtp: SmtpServer, where: str, text: str
) -> None:
    """The answer page and the pack show a form's text as it is stored and hashed: one holding a
    character that reorders it ("I \u202eton\u202c agree" reads "I not agree"), or a control
    character (or a line break where the page shows one line), is refused."""
    await signed_up(browser, smtp, firm="Plain Forms Ltd")
    asked = question("q1", "yes_no", explain_if="yes", help="Any time.")
    picked = question("q2", "choice", choices=["Yes", "No"])
    made = template_input("Annual review", asked, picked)
    if where in ("attestation", "name"):
        made[where] = text
    elif where == "choice":
        picked["choices"] = [text, "No"]
    else:
        asked[where] = text
    assert codes(await browser.gql(CREATE_TEMPLATE, {"i": made})) == ["BAD_USER_INPUT"]
    template_id = await create_template(browser, "Annual review", question("q1", "short_text"))
    version = await browser.gql(CREATE_VERSION, {"t": template_id, "i": made})
    assert codes(version) == ["BAD_USER_INPUT"], version
    plain = template_input("Annual review", question("q1", "yes_no", help="Line one.\nLine two."))
    plain["attestation"] = (
        "I confirm \u2714\ufe0f and sign as \u0641\u200c\u0627 \U0001f3f3\ufe0f\u200d\U0001f308."
    )
    assert "errors" not in await browser.gql(CREATE_VERSION, {"t": template_id, "i": plain})


@pytest.mark.parametrize(
    "choices",
    [
        ["caf\u00e9", "cafe\u0301"],  # composed and decomposed
        ["Yes", "yes"],
        ["a b", "a\u00a0b"],  # a no-break space
        ["No", "\uff2e\uff4f"],  # full-width
        ["Not  sure", "Not sure"],
    ],
)
async def test_choices_that_read_alike_are_refused(
    browser: Browser, smtp: SmtpServer, choices: list[str]
) -> None:
    """Two choices a reader cannot tell apart are two answers that the form, the answers and
    the pack would show as one: whichever a recipient picked, the record could not say."""
    await signed_up(browser, smtp, firm="Plain Choices Ltd")
    made = template_input("Roles", question("role", "choice", choices=choices))
    assert codes(await browser.gql(CREATE_TEMPLATE, {"i": made})) == ["BAD_USER_INPUT"]
    template_id = await create_template(browser, "Roles", question("q1", "short_text"))
    version = await browser.gql(CREATE_VERSION, {"t": template_id, "i": made})
    assert codes(version) == ["BAD_USER_INPUT"], version
    made["questions"][0]["choices"] = [*choices[:1], "Something else"]
    assert "errors" not in await browser.gql(CREATE_VERSION, {"t": template_id, "i": made})


@pytest.mark.parametrize(
    "name",
    [
        "Pat \u202eeoD\u202c",  # a right-to-left override: shows as "Pat Doe"
        "Pat Doe\nIMPORTANT: cover confirmed",
        "Pat\x1b[8m Doe",
        "\u200b",
        "Pat\U000e0041 Doe",
    ],
)
async def test_a_recipients_name_is_shown_as_it_is_stored(
    browser: Browser, smtp: SmtpServer, name: str
) -> None:
    """Listed to every member and printed in the packs, as counterparties' names are."""
    await signed_up(browser, smtp)
    one = {"templateId": str(FIT.id), "recipientName": name, "recipientEmail": new_email()}
    assert codes(await browser.gql(CREATE, {"i": one})) == ["BAD_USER_INPUT"]
    many = {"templateId": str(FIT.id), "recipients": [{"name": name, "email": new_email()}]}
    assert codes(await browser.gql(BULK, {"i": many})) == ["BAD_USER_INPUT"]


async def test_a_signature_is_shown_as_it_is_stored(
    browser: Browser, new_browser: NewBrowser, smtp: SmtpServer
) -> None:
    await signed_up(browser, smtp)
    _, token = await sent_declaration(browser, smtp, new_email())
    recipient = new_browser()
    answers = valid_answers((await form(recipient, token))["questions"])
    signed = submission(answers, signatureName="Pat \u202eeoD\u202c")
    assert codes(await recipient.gql(SUBMIT, {"t": token, "i": signed})) == ["BAD_USER_INPUT"]
    assert "errors" not in await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)})
