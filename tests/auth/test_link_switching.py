"""A link that signs in (a magic link, a confirmation, an invitation) does not silently replace
the browser's session of another account (login CSRF by link): a stranger sent a signed-in
person the stranger's own magic link, the person pressed the page's one button, and whatever
they entered next went into the stranger's look-alike firm. Refused SIGNED_IN_AS_ANOTHER, the
link not spent, unless the caller confirms the switch; the page then offers it."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.http.pages import _PAGES, render
from tests.browser import (
    FIRM,
    MAGIC,
    PASSWORD,
    SIGN_UP,
    Browser,
    codes,
    link_token,
    new_email,
    signed_up,
)
from tests.mail.smtp import SmtpServer

MAGIC_SIGN_IN = """mutation($t: String!, $s: Boolean! = false) {
  signInWithMagicLink(token: $t, switchAccount: $s) { userId } }"""
VERIFY = """mutation($t: String!, $p: String, $s: Boolean! = false) {
  verifyEmail(token: $t, password: $p, switchAccount: $s) { userId } }"""
INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
ACCEPT = """mutation($t: String!, $s: Boolean! = false) {
  acceptInvitation(token: $t, switchAccount: $s) { firmId } }"""


async def _firm_name(browser: Browser) -> str:
    name: str = (await browser.gql(FIRM))["data"]["firm"]["name"]
    return name


async def test_a_strangers_magic_link_does_not_replace_a_signed_in_session(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    victim = browser
    await signed_up(victim, smtp, firm="Victim Advisers Ltd")
    stranger = new_browser()
    stranger_email = await signed_up(stranger, smtp, firm="Victim Advisers Ltd.")
    assert "errors" not in await stranger.gql(MAGIC, {"e": stranger_email})
    token = await link_token(smtp, stranger_email, "sign-in link")  # sent on to the victim

    refused = await victim.gql(MAGIC_SIGN_IN, {"t": token})
    assert codes(refused) == ["SIGNED_IN_AS_ANOTHER"], refused
    assert await _firm_name(victim) == "Victim Advisers Ltd"  # still themselves
    # Not spent: confirmed, the switch goes ahead (the old session ends, as any sign-in's).
    switched = await victim.gql(MAGIC_SIGN_IN, {"t": token, "s": True})
    assert "errors" not in switched, switched
    assert await _firm_name(victim) == "Victim Advisers Ltd."


async def test_ones_own_link_in_ones_own_signed_in_browser_needs_no_confirmation(
    browser: Browser, smtp: SmtpServer
) -> None:
    email = await signed_up(browser, smtp)
    assert "errors" not in await browser.gql(MAGIC, {"e": email})
    token = await link_token(smtp, email, "sign-in link")
    assert "errors" not in await browser.gql(MAGIC_SIGN_IN, {"t": token})


async def test_a_confirmation_link_for_another_account_is_refused_alike(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    await signed_up(browser, smtp)
    email = new_email()
    signing_up = new_browser()
    variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Other Ltd"}}
    assert "errors" not in await signing_up.gql(SIGN_UP, variables)
    token = await link_token(smtp, email, "Confirm your email")
    refused = await browser.gql(VERIFY, {"t": token, "p": PASSWORD})
    assert codes(refused) == ["SIGNED_IN_AS_ANOTHER"], refused
    confirmed = await browser.gql(VERIFY, {"t": token, "p": PASSWORD, "s": True})
    assert "errors" not in confirmed, confirmed


async def test_an_invitation_for_another_account_is_refused_alike(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    await signed_up(browser, smtp, firm="Inviting Ltd")
    invitee = new_email()
    invited = await browser.gql(INVITE, {"input": {"email": invitee, "role": "MEMBER"}})
    assert "errors" not in invited, invited
    token = await link_token(smtp, invitee, "invited")
    other = new_browser()
    await signed_up(other, smtp, firm="Elsewhere Ltd")
    refused = await other.gql(ACCEPT, {"t": token})
    assert codes(refused) == ["SIGNED_IN_AS_ANOTHER"], refused
    assert await _firm_name(other) == "Elsewhere Ltd"
    accepted = await other.gql(ACCEPT, {"t": token, "s": True})
    assert "errors" not in accepted, accepted
    assert await _firm_name(other) == "Inviting Ltd"


async def test_an_invitation_of_ones_own_address_to_another_firm_is_confirmed_first(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    """Anyone may invite a signed-in person's own address to a look-alike firm: accepted, the
    browser moved into it, and whatever they entered next went there."""
    email = await signed_up(browser, smtp, firm="Mine Ltd")
    inviter = new_browser()
    await signed_up(inviter, smtp, firm="Mine Ltd.")
    invited = await inviter.gql(INVITE, {"input": {"email": email, "role": "MEMBER"}})
    assert "errors" not in invited, invited
    token = await link_token(smtp, email, "invited")
    refused = await browser.gql(ACCEPT, {"t": token})
    assert codes(refused) == ["SIGNED_IN_AS_ANOTHER"], refused
    assert await _firm_name(browser) == "Mine Ltd"
    accepted = await browser.gql(ACCEPT, {"t": token, "s": True})
    assert "errors" not in accepted, accepted
    assert await _firm_name(browser) == "Mine Ltd."


HARNESS = """
const [script, mode] = [process.argv[2], process.argv[3]];
const elements = {};
const element = (id) => (elements[id] ??= {id, textContent: "", hidden: false, value: "pw",
  listeners: {}, addEventListener(type, f) { this.listeners[type] = f; }});
elements.go = {textContent: "Sign in"};
if (mode === "nopassword") elements.password = null;
globalThis.document = {getElementById: (id) => id in elements ? elements[id] : element(id)};
globalThis.location = {hash: "#token=tok", pathname: "/auth/magic-link"};
globalThis.history = {replaceState() {}};
const sent = [];
const answers = [
  {errors: [{message: "Signed in to another.", extensions: {code: "SIGNED_IN_AS_ANOTHER"}}]},
  {data: {ok: true}},
];
globalThis.fetch = async (url, init) => {
  sent.push(JSON.parse(init.body).variables);
  const answer = answers.shift();
  return {json: async () => answer};
};
eval(script);
const press = async () => {
  await document.getElementById("form").listeners.submit({preventDefault() {}});
};
await press();
const status = document.getElementById("status");
const after = {button: elements.go.textContent, status: status.textContent};
await press();
console.log(JSON.stringify({sent, after, hidden: document.getElementById("form").hidden}));
"""


@pytest.mark.parametrize("page", [p for p in _PAGES if p.path != "reset-password"])
async def test_the_page_offers_the_switch_once_the_server_refuses_it(
    page: Any, tmp_path: Path
) -> None:
    """The page's own script (Node, with a stub DOM and a server that refuses the first press):
    it says why, its button offers the switch, and the second press asks for it."""
    node = shutil.which("node")
    assert node, "node is needed to run the page's script"
    body, _ = render(page)
    script = body.rsplit("<script", 1)[1].split(">", 1)[1].rsplit("</script>", 1)[0]
    harness = tmp_path / "harness.mjs"
    harness.write_text(HARNESS)
    mode = "password" if page.password else "nopassword"
    process = await asyncio.create_subprocess_exec(
        node,
        str(harness),
        script,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    first, second = result["sent"]
    assert first == {"token": "tok", **({"password": "pw"} if page.password else {})}
    assert second == {**first, "switchAccount": True}
    assert result["after"] == {
        "button": "Switch to this link's account",
        "status": "Signed in to another.",
    }
    assert result["hidden"] is True
