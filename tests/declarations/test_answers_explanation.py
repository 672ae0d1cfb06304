"""An explanation is asked for only when a yes/no answer is the one its question names
(explain_if). One sent beside the other answer, or beside no answer at all, would be stored,
hashed into the receipt and printed in the pack as "Explanation: ..." under "No" or "Not
answered": a record the form never asked for, contradicting the answer it sits under."""

from __future__ import annotations

from tests.browser import Browser, NewBrowser, codes, new_email, signed_up
from tests.declarations.test_firm_side import create_template, form, ok, question, submission
from tests.declarations.test_loop import READ, SUBMIT, sent_declaration
from tests.mail.smtp import SmtpServer


async def test_an_explanation_the_answer_did_not_call_for_is_refused(
    browser: Browser, new_browser: NewBrowser, smtp: SmtpServer
) -> None:
    await signed_up(browser, smtp, firm="Explained Ltd")
    template_id = await create_template(
        browser,
        "Convictions",
        question("convicted", "yes_no", explain_if="yes", explain_label="Give details"),
        question("other", "yes_no", required=False, explain_if="yes"),
    )
    declaration_id, token = await sent_declaration(browser, smtp, new_email(), template_id)
    recipient = new_browser()
    await form(recipient, token)
    answers = {
        "convicted": False,
        "convicted_explanation": "Convicted of fraud in 2019.",  # beside "No"
        "other_explanation": "An explanation of nothing.",  # beside no answer at all
    }
    body = await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)})
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["fields"] == [
        {
            "field": f"answers.{key}",
            "message": "Give an explanation only when the answer is yes.",
        }
        for key in ("convicted_explanation", "other_explanation")
    ]
    stored = ok(await browser.gql(READ, {"id": declaration_id}))["declaration"]
    assert (stored["status"], stored["response"]) == ("OPENED", None)
    # A blank explanation, as a form sends an empty box, is no explanation.
    blank = {"convicted": False, "convicted_explanation": "  ", "other_explanation": ""}
    ok(await recipient.gql(SUBMIT, {"t": token, "i": submission(blank)}))
    stored = ok(await browser.gql(READ, {"id": declaration_id}))["declaration"]
    assert stored["response"]["answers"] == {"convicted": False, "other": None}
