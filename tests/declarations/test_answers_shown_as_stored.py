"""A recipient's answers are listed to members, printed in the evidence pack and hashed into the
receipt as they are stored, as a signature and a recipient's name are
(test_firm_side.test_a_signature_is_shown_as_it_is_stored): an answer holding a bidi control, a
control character or characters shown as nothing would read one way on screen and in the pack
and be recorded, and hashed, as another. Such an answer is refused, naming its field; text in
other scripts, and emoji, are kept as sent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import Browser, NewBrowser, codes, new_email, signed_up
from tests.declarations.test_firm_side import create_template, form, ok, question, submission
from tests.declarations.test_loop import READ, SUBMIT, sent_declaration
from tests.mail.smtp import SmtpServer

HIDES = (
    "An answer may not hold characters that show as nothing, which pasted text can carry: "
    "type the answer rather than paste it."
)
CONTROL = "An answer may not hold control characters; line breaks and tabs are fine."
REORDERS = (
    "An answer may not hold characters that reorder text (bidi embeddings, overrides, isolates "
    "or direction marks): type it without them."
)
ONE_LINE = "Write this answer on one line, without control characters."
READ_RECEIPT = """query($id: UUID!) { declaration(id: $id) {
  response { answers responseSha256 receiptCoversForm } } }"""
QUESTIONS = (
    question("role", "short_text", required=False),
    question("conduct", "long_text", required=False),
    question("convicted", "yes_no", explain_if="yes"),
)


async def _sent(browser: Browser, smtp: SmtpServer, new_browser: NewBrowser) -> Any:
    await signed_up(browser, smtp, firm="Shown Ltd")
    template_id = await create_template(browser, "Conduct", *QUESTIONS)
    declaration_id, token = await sent_declaration(browser, smtp, new_email(), template_id)
    recipient = new_browser()
    await form(recipient, token)
    return declaration_id, token, recipient


@pytest.mark.parametrize(
    ("field", "answer", "message"),
    [
        ("conduct", "I have \u202esnoitcivnoc on\u202c", REORDERS),  # shows "I have no convictions"
        ("conduct", "None\x1b[8m except a 2019 conviction", CONTROL),  # an escape sequence
        ("conduct", "None\x1b]8;;https://x.example\x1b\\2019", CONTROL),  # a terminal link
        ("role", "Adviser\u2028CEO", ONE_LINE),  # a line separator breaks a line too
        ("conduct", "None\U000e0041\U000e0042", HIDES),  # tag characters: shown as nothing
        ("role", "Adviser\nIMPORTANT: cover confirmed", ONE_LINE),  # shown on one line
        ("role", "Adviser \u2067CEO\u2069", REORDERS),  # a right-to-left isolate
        ("convicted_explanation", "Speeding\u200c\u200d\u200cfraud", HIDES),  # bits in joiners
    ],
)
async def test_an_answer_is_shown_as_it_is_stored(
    browser: Browser,
    new_browser: NewBrowser,
    smtp: SmtpServer,
    field: str,
    answer: str,
    message: str,
) -> None:
    declaration_id, token, recipient = await _sent(browser, smtp, new_browser)
    answers: dict[str, Any] = {"convicted": field == "convicted_explanation", field: answer}
    body = await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)})
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["fields"] == [
        {"field": f"answers.{field}", "message": message}
    ]
    stored = ok(await browser.gql(READ, {"id": declaration_id}))["declaration"]
    assert (stored["status"], stored["response"]) == ("OPENED", None)


async def test_text_in_any_script_and_emoji_are_kept_as_sent(
    browser: Browser, new_browser: NewBrowser, smtp: SmtpServer
) -> None:
    """Hebrew and Arabic (their letters, not the controls), a Persian word with its joiner,
    emoji joined into one and with their presentation selector, the flags of England, Scotland
    and Wales and a keycap; line breaks and tabs in a long text, whose Windows line ends are
    stored as the line feeds the answer page sends."""
    declaration_id, token, recipient = await _sent(browser, smtp, new_browser)
    hebrew, arabic = "\u05d9\u05d5\u05e2\u05e5", "\u0645\u0633\u062a\u0634\u0627\u0631"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a joiner between letters
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # three emoji joined into one
    flags = "".join(
        "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in place) + "\U000e007f"
        for place in ("gbeng", "gbsct", "gbwls")
    )
    answers = {
        "role": f"{hebrew} {arabic} {persian}",
        "conduct": f"Fine \U0001f44d\U0001f3fd\r\n\tTeam: {family} \u2764\ufe0f",
        "convicted": True,
        "convicted_explanation": f"Line one.\nLine 2\ufe0f\u20e3 in {flags}.",
    }
    ok(await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)}))
    stored = ok(await browser.gql(READ, {"id": declaration_id}))["declaration"]["response"]
    assert stored["answers"] == {**answers, "conduct": answers["conduct"].replace("\r\n", "\n")}


async def test_text_typed_or_pasted_as_it_shows_is_kept(
    browser: Browser, new_browser: NewBrowser, smtp: SmtpServer
) -> None:
    """A tab pasted into one line, and Hebrew and Arabic, are kept as sent; a long text's line
    and paragraph separators are stored as line feeds, and paste debris that shows as nothing
    (a soft hyphen, a zero-width space, a word joiner, a byte order mark) is dropped. The
    receipt covers the answers as stored."""
    declaration_id, token, recipient = await _sent(browser, smtp, new_browser)
    hebrew, arabic = "\u05d9\u05d5\u05e2\u05e5 (2019)", "\u0661-\u0662"
    answers = {
        "role": "\ufeffAdviser\tCFO",
        "conduct": f"{hebrew} {arabic}\u2028Pasted.\u2029From Word: com\u00adpli\u200bance.",
        "convicted": True,
        "convicted_explanation": "Speeding\u2060 2019",
    }
    sent = ok(await recipient.gql(SUBMIT, {"t": token, "i": submission(answers)}))
    stored = ok(await browser.gql(READ_RECEIPT, {"id": declaration_id}))["declaration"]["response"]
    assert stored["answers"] == {
        "role": "Adviser\tCFO",
        "conduct": f"{hebrew} {arabic}\nPasted.\nFrom Word: compliance.",
        "convicted": True,
        "convicted_explanation": "Speeding 2019",
    }
    assert stored["responseSha256"] == sent["submitDeclaration"]["responseSha256"]
    assert stored["receiptCoversForm"] is True  # the receipt is the hash of what is stored
