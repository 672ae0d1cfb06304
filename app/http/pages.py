"""Minimal pages for emailed links (verify, magic link, reset, invitation), so `make run` alone
is a working product. Opening a page changes nothing: mail scanners open links before people
do. Only the button POSTs the mutation. The token travels in the URL fragment, which browsers
never send to a server; each page runs under a strict CSP with a per-response nonce.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.partners import first_party
from app.partners.documents import document_id


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    lead: str
    button: str
    mutation: str
    success: str
    password: str = ""  # the form's password field, if it has one


_NEW_PASSWORD = (
    '<p><label for="password">New password</label><br>'
    '<input id="password" name="password" type="password" autocomplete="new-password" '
    'minlength="12" maxlength="128" required></p>'
)
# Not required: an account signed up for sign-in links has no password.
_CHOSEN_PASSWORD = (
    '<p><label for="password">The password you chose when you signed up (if you chose one)'
    '</label><br><input id="password" name="password" type="password" '
    'autocomplete="current-password" maxlength="128"></p>'
)

_PAGES = [
    Page(
        "verify-email",
        "Confirm your email address",
        "Confirm this address to finish signing up.",
        "Confirm my email address",
        first_party.VERIFY_EMAIL,
        "Your email address is confirmed and you are signed in.",
        password=_CHOSEN_PASSWORD,
    ),
    Page(
        "magic-link",
        "Sign in to CoverProof",
        "Use this one-time link to sign in.",
        "Sign in",
        first_party.MAGIC_LINK_SIGN_IN,
        "You are signed in.",
    ),
    Page(
        "reset-password",
        "Choose a new password",
        "Use 12 to 128 characters; a passphrase of several words works well.",
        "Set my new password",
        first_party.RESET_PASSWORD,
        "Your password is changed. Every session was signed out; sign in again.",
        password=_NEW_PASSWORD,
    ),
    Page(
        "invitation",
        "Join your firm on CoverProof",
        "Accept the invitation to join the firm.",
        "Accept the invitation",
        first_party.ACCEPT_INVITATION,
        "You have joined the firm and are signed in.",
    ),
]

_SCRIPT = """
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
history.replaceState(null, "", location.pathname);
const form = document.getElementById("form");
const status = document.getElementById("status");
const button = document.getElementById("go");
// Set once the server said this browser is signed in to another account: the next press
// switches to the link's, as the button then says.
let switchAccount = false;
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("password");
  const variables = password ? {token, password: password.value} : {token};
  if (switchAccount) variables.switchAccount = true;
  status.textContent = "Working...";
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      credentials: "same-origin",
      headers: {"content-type": "application/json", "accept": "application/json"},
      body: JSON.stringify({documentId: DOCUMENT, variables}),
    });
    const body = await response.json();
    const error = body.errors ? body.errors[0] : null;
    status.textContent = error ? error.message : SUCCESS;
    if (!error) form.hidden = true;
    if (error && (error.extensions || {}).code === "SIGNED_IN_AS_ANOTHER") {
      switchAccount = true;
      button.textContent = "Switch to this link's account";
    }
  } catch (error) {
    status.textContent = "Something went wrong; try again.";
  }
});
"""


def render(page: Page) -> tuple[str, dict[str, str]]:
    nonce = secrets.token_urlsafe(16)
    script = (
        f"const DOCUMENT = {json.dumps('sha256:' + document_id(page.mutation))};\n"
        f"const SUCCESS = {json.dumps(page.success)};\n{_SCRIPT}"
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(page.title)} - CoverProof</title>"
        f'<style nonce="{nonce}">body{{font-family:system-ui,sans-serif;max-width:32rem;'
        "margin:3rem auto;padding:0 1rem;line-height:1.5}button,input{font-size:1rem;"
        "padding:.5rem}</style></head><body><main>"
        f"<h1>{html.escape(page.title)}</h1><p>{html.escape(page.lead)}</p>"
        f'<form id="form">{page.password}'
        f'<button id="go" type="submit">{html.escape(page.button)}</button></form>'
        '<p id="status" role="status" aria-live="polite"></p></main>'
        f'<script nonce="{nonce}">{script}</script></body></html>'
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return body, {"content-security-policy": csp, "cache-control": "no-store"}


def _endpoint(page: Page) -> object:
    async def show(request: Request) -> Response:
        body, headers = render(page)
        return HTMLResponse(body, headers=headers)

    return show


PAGES = [Route(f"/auth/{page.path}", _endpoint(page), methods=["GET"]) for page in _PAGES]  # type: ignore[arg-type]
