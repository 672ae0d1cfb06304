"""Declarations from the recipient's side, through HTTP as their browser calls them: strict
answers with per-field errors, views that never use the link up, links that reach one
declaration of one firm only, rate limits, and no session needed."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.sessions import COOKIE_NAME
from app.declarations import links
from app.errors import TokenUsed
from app.http import respond
from app.partners import first_party
from app.partners.documents import document_id
from app.ratelimit.policies import Policy
from tests.browser import Browser, NewBrowser, browser_for, codes, new_email, signed_up
from tests.declarations.test_firm_side import (
    COUNTS,
    GET,
    REISSUE,
    actions_on,
    counts,
    create_template,
    error_fields,
    firm_of,
    form,
    get,
    join,
    nth_link,
    ok,
    question,
    stored,
    submission,
    submit_valid,
)
from tests.declarations.test_loop import FIT, FORM, SUBMIT, sent_declaration, valid_answers
from tests.mail.smtp import SmtpServer
from tests.partners import run_persisted

EVERY_KIND = (
    question("flag", "yes_no"),
    question("yn", "yes_no", explain_if="yes", explain_label="Tell us more"),
    question("st", "short_text", max_length=10),
    question("lt", "long_text"),
    question("dt", "date"),
    question("mn", "money", min_pence=100, max_pence=10_000_000),
    question("ch", "choice", choices=["Alpha", "Beta"]),
)
GOOD = {
    "flag": False,
    "yn": True,
    "yn_explanation": "A late filing in 2024.",
    "st": "Short one",
    "lt": "A longer answer about the matter.",
    "dt": "2026-03-31",
    "mn": 150_000,
    "ch": "Beta",
}
FULL_FORM = """query($t: String!) { recipientForm(token: $t) { firmName recipientName
  templateName templateVersion attestation dueDate linkExpiresAt
  questions { id label kind required help explainIf explainLabel choices maxLength minPence
  maxPence } } }"""


def messages(body: dict[str, Any]) -> dict[str, str]:
    return {f["field"]: f["message"] for f in body["errors"][0]["extensions"]["fields"]}


# ---- 9. strict answers --------------------------------------------------------------------------


async def test_bad_answers_of_every_kind_are_refused_field_by_field_and_the_link_survives(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    await signed_up(browser, smtp, firm="Answers Ltd")
    admin = await join(browser, smtp, new_browser(), "ADMIN")
    template_id = await create_template(admin, "Every kind", *EVERY_KIND)
    declaration_id, token = await sent_declaration(browser, smtp, new_email(), template_id)
    recipient = new_browser()
    kinds = {q["id"]: q["kind"] for q in (await form(recipient, token))["questions"]}
    assert kinds == {
        "flag": "YES_NO",
        "yn": "YES_NO",
        "st": "SHORT_TEXT",
        "lt": "LONG_TEXT",
        "dt": "DATE",
        "mn": "MONEY",
        "ch": "CHOICE",
    }

    async def refused(answers: Any, **overrides: Any) -> dict[str, Any]:
        body = await recipient.gql(SUBMIT, {"t": token, "i": submission(answers, **overrides)})
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["data"] is None, body
        return body

    everything_wrong = {
        "flag": "yes",  # a string for yes/no
        "yn": True,  # triggers an explanation, which is left out
        "st": "x" * 11,  # one over its limit
        # "lt" (required) is left out
        "dt": "2025-02-30",  # not a real date
        "mn": 1500.5,  # a float for money
        "ch": "Gamma",  # not one of the choices
        "zz": "what is this",  # not a question
    }
    found = messages(await refused(everything_wrong))
    assert sorted(found) == [
        "answers.ch",
        "answers.dt",
        "answers.flag",
        "answers.lt",
        "answers.mn",
        "answers.st",
        "answers.yn_explanation",
        "answers.zz",
    ]
    assert found["answers.lt"] == "This question must be answered."
    assert found["answers.st"] == "Use at most 10 characters."
    assert found["answers.zz"] == "Unknown question."
    assert found["answers.flag"] == "Answer yes (true) or no (false)."
    assert "2025-02-30" in found["answers.dt"]
    assert "Alpha" in found["answers.ch"]
    assert "Beta" in found["answers.ch"]
    assert "whole number of pence" in found["answers.mn"]
    assert "explanation" in found["answers.yn_explanation"]

    nothing = messages(await refused({}))
    assert sorted(nothing) == [f"answers.{q}" for q in sorted(kinds)]
    assert set(nothing.values()) == {"This question must be answered."}

    for field, bad in (
        ("mn", 150_000.0),
        ("mn", "150000"),
        ("mn", 99),
        ("flag", 1),
        ("flag", None),
        ("st", 12345),
        ("st", "   "),
        ("dt", "31/03/2026"),
        ("dt", 20260331),
        ("ch", "beta"),
        ("yn_explanation", "x" * 5001),
    ):
        body = await refused({**GOOD, field: bad})
        assert error_fields(body) == [f"answers.{field}"], (field, bad, body)
    no_explanation = {k: v for k, v in GOOD.items() if k != "yn_explanation"}
    assert error_fields(await refused(no_explanation)) == ["answers.yn_explanation"]
    assert error_fields(await refused([GOOD])) == ["answers"]

    body = await refused(GOOD, attestationAccepted=False)
    assert error_fields(body) == ["attestationAccepted"], body
    for blank in ("", "   ", "\u200b", "\u200b\u00ad"):  # nor only what is not shown
        assert error_fields(await refused(GOOD, signatureName=blank)) == ["signatureName"]
    # Every problem at once, so that one round of corrections is enough.
    body = await refused({**GOOD, "st": 12345}, attestationAccepted=False, signatureName=" ")
    assert error_fields(body) == ["answers.st", "attestationAccepted", "signatureName"], body

    # None of that used the link up or recorded a submission.
    assert (await get(browser, declaration_id))["status"] == "OPENED"
    assert "declaration.submitted" not in await actions_on(superuser_engine, declaration_id)
    done = await recipient.gql(SUBMIT, {"t": token, "i": submission(GOOD)})
    assert "errors" not in done, done
    read = ok(
        await browser.gql(
            "query($id: UUID!) { declaration(id: $id) { status response { answers } } }",
            {"id": declaration_id},
        )
    )["declaration"]
    assert read == {"status": "SUBMITTED", "response": {"answers": GOOD}}


# ---- 10. viewing does not consume ---------------------------------------------------------------


async def test_viewing_the_form_repeatedly_uses_nothing_up_and_is_audited_once(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Views Ltd")
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    recipient = browser_for(auth_app)
    async with recipient.client:
        views = [await form(recipient, token) for _ in range(3)]
        assert views[0] == views[1] == views[2]
        opened_at = (await get(browser, declaration_id))["openedAt"]
        assert opened_at is not None
        assert (await form(recipient, token))["recipientName"] == "Pat Doe"
        assert (await get(browser, declaration_id))["openedAt"] == opened_at
        done = await recipient.gql(
            SUBMIT, {"t": token, "i": submission(valid_answers(views[0]["questions"]))}
        )
        assert "errors" not in done, done
        assert codes(await recipient.gql(FORM, {"t": token})) == ["TOKEN_USED"]

    actions = await actions_on(superuser_engine, declaration_id)
    assert actions.count("declaration.opened") == 1
    assert actions[:4] == [
        "declaration.created",
        "declaration.sent",
        "declaration.opened",
        "declaration.submitted",
    ]
    async with superuser_engine.connect() as conn:
        opened = await conn.execute(
            text(
                "select count(*) from audit_log where target_id = :id "
                "and action = 'declaration.opened'"
            ),
            {"id": declaration_id},
        )
        assert opened.scalar_one() == 1


async def test_a_get_never_opens_the_form(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """A link scanner or prefetcher may GET whatever it finds: the shipped form document sent
    by GET is refused (405, METHOD_NOT_ALLOWED, as every GET refusal is) and records nothing;
    the page's POST opens it."""
    await signed_up(browser, smtp, firm="Prefetched Ltd")
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    recipient = browser_for(auth_app)
    async with recipient.client:
        fetched = await run_persisted(
            recipient.client, first_party.RECIPIENT_FORM, {"t": token}, form="get"
        )
        assert fetched.status_code == 405, fetched.text
        assert codes(fetched.json()) == ["METHOD_NOT_ALLOWED"], fetched.text
        assert "POST" in fetched.headers["allow"]
        assert "data" not in fetched.json()
        still = await get(browser, declaration_id)
        assert (still["status"], still["openedAt"]) == ("SENT", None)
        assert "declaration.opened" not in await actions_on(superuser_engine, declaration_id)
        posted = await run_persisted(recipient.client, first_party.RECIPIENT_FORM, {"t": token})
        assert posted.json()["data"]["recipientForm"]["recipientName"] == "Pat Doe", posted.text
    assert (await get(browser, declaration_id))["status"] == "OPENED"
    assert "declaration.opened" in await actions_on(superuser_engine, declaration_id)


# ---- 11. one token, one declaration, one firm ---------------------------------------------------


async def test_a_firms_token_reaches_only_its_own_declaration(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    await signed_up(browser, smtp, firm="Alpha Advisers Ltd")
    firm_b = new_browser()
    await signed_up(firm_b, smtp, firm="Beta Brokers Ltd")
    firm_b_id = (await firm_of(firm_b))["id"]
    b_template = await create_template(firm_b, "Beta's own questions", question("beta_q", "date"))
    b_email = new_email()
    b_declaration, b_token = await sent_declaration(firm_b, smtp, b_email, b_template)
    b_before = await get(firm_b, b_declaration)
    b_counts = await counts(firm_b)
    b_rows = await stored(superuser_engine, firm_b_id)

    a_email = new_email()
    a_declaration, old_token = await sent_declaration(browser, smtp, a_email)
    ok(await browser.gql(REISSUE, {"id": a_declaration}))
    a_token = await nth_link(smtp, a_email, 2)

    recipient = new_browser()
    raw = await recipient.post(FULL_FORM, {"t": a_token})
    a_form = ok(raw.json())["recipientForm"]
    assert a_form["firmName"] == "Alpha Advisers Ltd"
    assert a_form["templateName"] == FIT.spec.name
    assert [q["id"] for q in a_form["questions"]] == [q.id for q in FIT.spec.questions]
    for secret in ("Beta", b_email, b_declaration, b_template, firm_b_id, "beta_q"):
        assert secret not in raw.text, secret

    # Forged and dead tokens.
    middle = len(a_token) // 2
    forged = [
        a_token[:5] + ("A" if a_token[5] != "A" else "B") + a_token[6:],
        a_token[:middle] + ("x" if a_token[middle] != "x" else "y") + a_token[middle + 1 :],
        a_token[:-1],
        a_token + "A",
        a_token.split(".")[0],
        "",
        "not-a-token",
        a_token * 3,
    ]
    for token in [*forged, old_token]:
        assert codes(await recipient.gql(FORM, {"t": token})) == ["TOKEN_INVALID"], token
        body = await recipient.gql(SUBMIT, {"t": token, "i": submission({})})
        assert codes(body) == ["TOKEN_INVALID"], token

    # Without a session the recipient reaches no firm data at all.
    for query, variables in ((GET, {"id": b_declaration}), (COUNTS, None)):
        assert codes(await recipient.gql(query, variables)) == ["UNAUTHENTICATED"]

    # Submitting A's declaration (even from a browser signed in to firm B) touches only A's.
    answers = valid_answers(a_form["questions"])
    done = await firm_b.gql(SUBMIT, {"t": a_token, "i": submission(answers)})
    assert "errors" not in done, done
    assert (await get(browser, a_declaration))["status"] == "SUBMITTED"
    assert await get(firm_b, b_declaration) == b_before
    assert b_before["status"] == "SENT"
    assert await counts(firm_b) == b_counts
    assert await stored(superuser_engine, firm_b_id) == b_rows
    assert codes(await firm_b.gql(GET, {"id": a_declaration})) == ["NOT_FOUND"]
    b_form = await form(recipient, b_token)
    assert b_form["firmName"] == "Beta Brokers Ltd"
    assert [q["id"] for q in b_form["questions"]] == ["beta_q"]


# ---- 12. rate limits ----------------------------------------------------------------------------


async def test_a_token_answers_at_most_thirty_times_a_minute(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp, firm="Limits Ltd")
    _, token = await sent_declaration(browser, smtp, new_email())
    _, other_token = await sent_declaration(browser, smtp, new_email())
    recipient = new_browser()
    results = [await recipient.gql(FORM, {"t": token}) for _ in range(31)]
    assert [codes(r) for r in results[:30]] == [[]] * 30
    limited = results[30]
    assert codes(limited) == ["RATE_LIMITED"], limited
    retry_after = limited["errors"][0]["extensions"]["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60

    # The limit is the token's, from anywhere; the same address may still use another link.
    elsewhere = new_browser()
    assert codes(await elsewhere.gql(FORM, {"t": token})) == ["RATE_LIMITED"]
    body = await elsewhere.gql(SUBMIT, {"t": token, "i": submission({})})
    assert codes(body) == ["RATE_LIMITED"]
    assert (await form(recipient, other_token))["recipientName"] == "Pat Doe"


# ---- 13. no session ------------------------------------------------------------------------------


async def _accounts(superuser: AsyncEngine, email: str) -> tuple[int, int, int]:
    """All users and all sessions, and the users with this address."""
    async with superuser.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select (select count(*) from users), (select count(*) from sessions), "
                    "(select count(*) from users where lower(email) = lower(:e))"
                ),
                {"e": email},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_recipients_need_no_session_and_see_only_what_they_ask_for(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Sessionless Ltd")
    assert browser.session_cookie is not None
    recipient_email = new_email()
    declaration_id, token = await sent_declaration(browser, smtp, recipient_email)
    accounts = await _accounts(superuser_engine, recipient_email)
    other_email = new_email()
    other_id, other_token = await sent_declaration(browser, smtp, other_email)

    recipient = browser_for(auth_app)
    async with recipient.client:
        assert len(recipient.client.cookies) == 0
        response = await recipient.post(
            "query($t: String!) { recipientForm(token: $t) { firmName templateName } }",
            {"t": token},
        )
        assert response.json() == {
            "data": {
                "recipientForm": {"firmName": "Sessionless Ltd", "templateName": FIT.spec.name}
            }
        }
        assert "set-cookie" not in response.headers

        full = await recipient.post(FULL_FORM, {"t": token})
        form_keys = set(full.json()["data"]["recipientForm"])
        assert form_keys == {
            "firmName",
            "recipientName",
            "templateName",
            "templateVersion",
            "attestation",
            "dueDate",
            "linkExpiresAt",
            "questions",
        }
        assert set(full.json()) == {"data"}
        for other in (other_email, other_id, declaration_id, COOKIE_NAME):
            assert other not in full.text, other

        questions = full.json()["data"]["recipientForm"]["questions"]
        done = await recipient.post(SUBMIT, {"t": token, "i": submission(valid_answers(questions))})
        assert set(done.json()["data"]["submitDeclaration"]) == {"submittedAt", "responseSha256"}
        assert "errors" not in done.json(), done.json()
        assert "set-cookie" not in done.headers
        for other in (other_email, other_id, declaration_id):
            assert other not in done.text, other
        assert len(recipient.client.cookies) == 0
    # Answering made no account: no user (none with the recipient's address), no session.
    after = await _accounts(superuser_engine, recipient_email)
    assert after == accounts
    assert after[2] == 0

    # A firm user's cookie neither helps nor hinders: the token alone decides.
    assert (await form(browser, other_token))["firmName"] == "Sessionless Ltd"
    await submit_valid(browser, other_token)
    assert (await get(browser, declaration_id))["status"] == "SUBMITTED"
    assert (await get(browser, other_id))["status"] == "SUBMITTED"


async def test_a_view_racing_a_submission_never_moves_it_back(
    auth_app: Starlette,
    smtp: SmtpServer,
    browser: Browser,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The view read the declaration as `sent` just before a submission committed: its
    conditional update must change nothing and record no `declaration.opened`."""
    from sqlalchemy.orm.attributes import set_committed_value

    from app.db.tenant import transaction
    from app.declarations import public

    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    async with superuser_engine.begin() as conn:
        firm_id = await conn.scalar(
            text(
                "update declarations set status = 'submitted', submitted_at = now() "
                "where id = :i returning firm_id"
            ),
            {"i": declaration_id},
        )
    state = auth_app.state.coverproof
    real_found = public._found

    async def stale_found(session: Any, env: Any, link: str) -> Any:
        await public.bind_tenant(session, firm_id, uuid.UUID(declaration_id))
        found = await session.get(public.Declaration, uuid.UUID(declaration_id))
        # What the view had read before the submission committed (not a change to write).
        set_committed_value(found, "status", "sent")
        return found, links.token_hash(state.secret_key, link)

    monkeypatch.setattr(public, "_found", stale_found)
    async with transaction(state.sessions) as session:

        async def limit(*_: object) -> None:
            return None

        async def room_to_record(*_: object) -> bool:
            return True

        limits = {"limit": limit, "room_to_record": room_to_record}
        env = type("Env", (), {"ip": None, "secret_key": state.secret_key, **limits})()
        with pytest.raises(TokenUsed):  # read again under its lock: used
            await public.recipient_form(session, env, token)
    monkeypatch.setattr(public, "_found", real_found)
    async with superuser_engine.connect() as conn:
        status = await conn.execute(
            text("select status from declarations where id = :i"), {"i": declaration_id}
        )
        assert status.scalar_one() == "submitted"
        opened = await conn.execute(
            text(
                "select count(*) from audit_log where target_id = :i "
                "and action = 'declaration.opened'"
            ),
            {"i": declaration_id},
        )
        assert opened.scalar_one() == 0


REISSUED = "token_hash = sha256(gen_random_uuid()::text::bytea)"
REVOKED = "status = 'revoked', revoked_at = now(), token_hash = null"
LINK_CHANGES = pytest.mark.parametrize(
    ("meanwhile", "code", "said"),
    [
        (REISSUED, "TOKEN_INVALID", "replaced by a newer one"),
        (REVOKED, "TOKEN_INVALID", "withdrawn"),
        ("token_expires_at = now() - interval '1 second'", "TOKEN_EXPIRED", "expired"),
    ],
)


def change_after_lookup(
    monkeypatch: pytest.MonkeyPatch, superuser: AsyncEngine, declaration_id: str, change: str
) -> None:
    """The link's declaration changed (``change``, as SQL) just after a request looked it up."""
    from app.declarations import public

    real_found = public._found

    async def found_then_changed(session: Any, env: Any, link: str) -> Any:
        found = await real_found(session, env, link)
        async with superuser.begin() as conn:
            await conn.execute(
                text(f"update declarations set {change} where id = :i"), {"i": declaration_id}
            )
        return found

    monkeypatch.setattr(public, "_found", found_then_changed)


@LINK_CHANGES
async def test_a_view_losing_to_a_change_of_its_link_is_refused_and_opens_nothing(
    auth_app: Starlette,
    smtp: SmtpServer,
    browser: Browser,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
    code: str,
    said: str,
) -> None:
    """The link was reissued, withdrawn or expired after the view looked it up: the old link
    is dead at once (its form is not shown, the declaration is not marked opened), and the
    recipient is told why, as a later view would be."""
    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    change_after_lookup(monkeypatch, superuser_engine, declaration_id, meanwhile)
    recipient = browser_for(auth_app)
    async with recipient.client:
        answer = await recipient.gql(FORM, {"t": token})
    assert codes(answer) == [code], answer
    assert said in answer["errors"][0]["message"], answer
    assert "declaration.opened" not in await actions_on(superuser_engine, declaration_id)
    assert (await get(browser, declaration_id))["openedAt"] is None


@LINK_CHANGES
async def test_a_submission_losing_to_a_change_of_its_link_is_told_which(
    auth_app: Starlette,
    smtp: SmtpServer,
    browser: Browser,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
    code: str,
    said: str,
) -> None:
    """The link was reissued, revoked or expired after the submission read it and before its
    update: the recipient is told that (which, as a later attempt would be), not that the link
    was already used, and nothing is stored."""
    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    questions = (await form(browser_for(auth_app), token))["questions"]
    change_after_lookup(monkeypatch, superuser_engine, declaration_id, meanwhile)
    recipient = browser_for(auth_app)
    async with recipient.client:
        answer = await recipient.gql(
            SUBMIT, {"t": token, "i": submission(valid_answers(questions))}
        )
    assert codes(answer) == [code], answer
    assert said in answer["errors"][0]["message"], answer
    assert (await get(browser, declaration_id))["status"] != "SUBMITTED"


async def _run_page(
    node: str, script: Path, token: str, network: str, link: str = "fragment"
) -> dict[str, Any]:
    harness = Path(__file__).with_name("answer_page.mjs")
    process = await asyncio.create_subprocess_exec(
        node,
        str(harness),
        str(script),
        token,
        network,
        link,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out)
    return seen


async def test_the_answer_page_fetches_the_form_only_when_asked(tmp_path: Path) -> None:
    """The page's script, run in a stand-in for a browser (Node with a stub DOM): loading it
    sends nothing, so a link scanner or preview that runs scripts never marks the declaration
    opened; pressing "Open the form" (once) POSTs the form's persisted query with the link's
    token, and shows what went wrong if it was refused or never arrived."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (it runs the Apollo Client test too)"
    body, _ = respond.render()
    found = re.search(r'<script nonce="[^"]+">(.*)</script>', body, re.DOTALL)
    assert found is not None
    # The button is in the markup, before the script that listens to it.
    assert body.index('<button id="open" type="button">Open the form</button>') < found.start()
    script = tmp_path / "page.js"
    script.write_text(found.group(1))
    token = "a.token/with+odd=chars"
    refused = await _run_page(node, script, token, "refused")
    assert (refused["loaded"], refused["once"]) == (0, True)
    assert refused["clicked"] == [
        {
            "url": "/graphql",
            "method": "POST",
            "body": {
                "documentId": "sha256:" + document_id(first_party.RECIPIENT_FORM),
                "variables": {"t": token},
            },
        }
    ]
    assert refused["shown"] == [["p", "alert", "This link is not valid."]]
    # A link mailed before the token moved to the fragment sends the same.
    assert (await _run_page(node, script, token, "refused", "path"))["clicked"] == refused[
        "clicked"
    ]
    form = await _run_page(node, script, token, "form")
    assert [form["shown"][0], form["shown"][-1][0]] == [["h1", None, "Fitness"], "form"]
    assert form["focused"] == "h1"  # where the pressed button was, now gone
    # After a reload, a submission this tab sent (its key kept) is asked after first: if it
    # arrived, its receipt is shown and the form (refused once submitted) is not asked for.
    receipt_query = {
        "url": "/graphql",
        "method": "POST",
        "body": {
            "documentId": "sha256:" + document_id(first_party.SUBMISSION_RECEIPT),
            "variables": {"t": token, "k": "k" * 32},
        },
    }
    kept = await _run_page(node, script, token, "kept")
    assert kept["clicked"] == [receipt_query]
    assert kept["shown"] == [
        ["h1", None, "Your declaration"],
        ["p", None, "Thank you: your answers were submitted."],
        ["p", None, "Receipt (SHA-256 of your response): "],
        ["code", None, "ab" * 32],
    ]
    assert kept["focused"] == "h1"
    # Nothing arrived with the key: the form. The ask failing: never the form, which would
    # only say the link was used if the submission had in fact arrived.
    unreceived = await _run_page(node, script, token, "kept-unreceived")
    assert unreceived["clicked"] == [receipt_query, refused["clicked"][0]]
    assert unreceived["shown"][0] == ["h1", None, "Fitness"]
    limited = await _run_page(node, script, token, "kept-limited")
    assert limited["clicked"] == [receipt_query]
    assert limited["shown"] == [
        [
            "p",
            "alert",
            "We could not check whether your answers arrived. Reload this page to try again.",
        ]
    ]
    # A submission refused by a server error may have gone through: the page asks for the same
    # answers again (a retry with the same key gets the receipt), never for corrections. Both
    # presses send one key, made at the first.
    failed = await _run_page(node, script, token, "submit-failed")
    [first, second] = failed["submitted"]
    assert first == second
    assert re.fullmatch("[0-9a-f]{32}", first["idempotencyKey"])
    assert failed["status"] == [
        "We could not confirm your submission. Press Submit again without changing your "
        "answers: it will not be sent twice."
    ]
    accepted = await _run_page(node, script, token, "submit-ok")
    assert len(accepted["submitted"]) == 1
    # Every answer is read, whatever its question's id (form.elements["length"] is a count).
    # An explanation is sent, and its box shown, only beside the answer that calls for it: not
    # one typed beside the other answer ("past") or beside none ("gap").
    assert accepted["submitted"][0]["answers"] == {
        "q1_explanation": 1250,
        "q1": False,
        "length": "Five years",
        "sig": True,
        "sig_explanation": "Once, in 2020",
        "past": False,
    }
    assert accepted["explained"] == {
        "before": {"sig": False, "past": False, "gap": False},
        "after": {"sig": True, "past": False, "gap": False},
    }
    assert accepted["status"] == [
        "Thank you: your answers were submitted. We are emailing you a copy of this receipt.",
        "Receipt (SHA-256 of your response): ",
        "ab" * 32,
    ]
    invalid = await _run_page(node, script, token, "submit-invalid")
    # Each error by its question's label, not the id the recipient never sees; a question's
    # own id before another's explanation of the same name.
    assert invalid["status"] == [
        "Please correct:",
        "Ever?: Choose one.",
        "Fee?: Enter a whole number of pence.",
        "Refused? (explanation): Give an explanation only when...",
        "Your full name: Sign with your full name.",
        "Accept the statement to submit.",  # by its message alone, not attestationAccepted
    ]
    offline = await _run_page(node, script, token, "offline")
    assert offline["shown"] == [
        [
            "p",
            "alert",
            "The form could not be opened. Check your connection, then reload this page.",
        ]
    ]


async def test_a_caller_past_its_own_limit_uses_up_nothing_of_a_recipients_link(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    """A caller refused by its own limit counts nothing against the link: replaying a
    recipient's link, it would leave the recipient refused (as account links did)."""
    await signed_up(browser, smtp, firm="Limits Ltd")
    _, token = await sent_declaration(browser, smtp, new_email())
    hammering = new_browser()
    for _ in range(int(Policy.PUBLIC_TOKEN_PER_IP.item.amount)):
        await hammering.gql(FORM, {"t": "x" + uuid.uuid4().hex})
    for _ in range(int(Policy.PUBLIC_TOKEN_PER_TOKEN.item.amount)):
        assert codes(await hammering.gql(FORM, {"t": token})) == ["RATE_LIMITED"]
    assert (await form(new_browser(), token))["recipientName"] == "Pat Doe"
