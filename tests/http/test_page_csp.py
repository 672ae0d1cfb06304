"""The HTML pages' own Content-Security-Policy, compared whole: the recipient's answer page
(/respond#token=...) and the pages for emailed links (/auth/*) replace the API's policy with
one that lets their single nonce-tagged script and style run. A substring check would pass a
policy that also allowed 'unsafe-eval', any https: script or *, or that dropped form-action;
these parse the header into directives and compare it with the policy written out below, so
any change to it in app/http/pages.py or app/http/respond.py must be made here too, on purpose.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tests.browser import Browser, browser_for, new_email, signed_up
from tests.declarations.test_loop import sent_declaration
from tests.mail.smtp import SmtpServer

# Both kinds of page send this, with a fresh nonce per response. default-src 'none' covers
# object-src, img-src, font-src, frame-src and the rest; form-action 'none' stops the form
# being posted anywhere but by the script; connect-src 'self' keeps its fetch to /graphql.
PAGE_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
AUTH_PAGES = ["/auth/verify-email", "/auth/magic-link", "/auth/reset-password", "/auth/invitation"]
# secrets.token_urlsafe(16): 128 random bits, in base64url without padding.
NONCE = re.compile(r"[A-Za-z0-9_-]{22,}")


def directives(policy: str) -> dict[str, list[str]]:
    """A serialized policy as {directive: sorted sources}. A browser obeys only the first of
    two directives of one name, so a repeated name is an error here rather than merged."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if not part.strip():
            continue
        name, *sources = part.split()
        name = name.lower()
        assert name not in parsed, f"{name} appears twice in {policy!r}"
        parsed[name] = sorted(sources)
    return parsed


class NonceTags(HTMLParser):
    """The nonce attribute of every <script> and <style> in a page (None where missing)."""

    def __init__(self) -> None:
        super().__init__()
        self.nonces: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.nonces.append((tag, dict(attrs).get("nonce")))


def page_nonce(response: httpx.Response) -> str:
    """The nonce the page's one script and one style carry (the same on both, and long)."""
    tags = NonceTags()
    tags.feed(response.text)
    assert sorted(tag for tag, _ in tags.nonces) == ["script", "style"], tags.nonces
    nonces = {nonce for _, nonce in tags.nonces}
    assert len(nonces) == 1, tags.nonces
    nonce = nonces.pop()
    assert nonce is not None
    assert NONCE.fullmatch(nonce), nonce
    return nonce


def assert_page_csp(response: httpx.Response) -> str:
    """The response's one CSP header is exactly PAGE_CSP with the nonce its tags carry;
    returns that nonce."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    sent = response.headers.get_list("content-security-policy")
    assert len(sent) == 1, sent  # the middleware's API policy is replaced, not added to
    nonce = page_nonce(response)
    assert directives(sent[0]) == directives(PAGE_CSP.format(nonce=nonce))
    return nonce


async def test_the_app_serves_exactly_these_pages(app: Starlette) -> None:
    """A new /auth/ page must be added to AUTH_PAGES, and so to the tests below."""
    paths = [route.path for route in app.routes if isinstance(route, Route)]
    assert sorted(p for p in paths if p.startswith("/auth/")) == sorted(AUTH_PAGES)
    assert {"/respond", "/respond/{token}"} <= set(paths)


@pytest.mark.parametrize("path", AUTH_PAGES)
async def test_each_auth_page_sends_exactly_the_page_policy(
    client: httpx.AsyncClient, path: str
) -> None:
    first = assert_page_csp(await client.get(path))
    second = assert_page_csp(await client.get(path))
    assert first != second


async def test_the_answer_page_of_a_sent_declaration_sends_exactly_the_page_policy(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """Opened through the link a real sent declaration's email carries, as a recipient would
    (the token in the fragment, which the browser keeps), and through the form of link sent
    before it moved there (the token in the path)."""
    await signed_up(browser, smtp, firm="Policy Advisers Ltd")
    _, token = await sent_declaration(browser, smtp, new_email())
    recipient = browser_for(auth_app)
    async with recipient.client:
        first = await recipient.client.get("/respond")
        second = await recipient.client.get(f"/respond/{token}")
    assert "Open the form" in first.text  # the answer page, not an error page
    assert "Open the form" in second.text
    assert assert_page_csp(first) != assert_page_csp(second)


@pytest.mark.parametrize(
    "looser",
    [
        PAGE_CSP.replace("script-src", "script-src 'unsafe-eval'"),
        PAGE_CSP.replace("script-src", "script-src https:"),
        PAGE_CSP.replace("script-src", "script-src *"),
        PAGE_CSP.replace("style-src", "style-src 'unsafe-inline'"),
        PAGE_CSP.replace("connect-src 'self'", "connect-src *"),
        PAGE_CSP.replace("form-action 'none'; ", ""),
        PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors *"),
        PAGE_CSP + "; object-src *",
        PAGE_CSP.replace("default-src 'none'", "default-src 'none'; default-src *"),
    ],
    ids=[
        "unsafe-eval",
        "https-scripts",
        "any-script",
        "inline-style",
        "connect-anywhere",
        "no-form-action",
        "framed",
        "extra-directive",
        "repeated-directive",
    ],
)
def test_a_looser_policy_does_not_compare_equal(looser: str) -> None:
    """The comparison is of the whole policy: each loosening is told apart from it."""
    with pytest.raises(AssertionError):
        assert directives(looser.format(nonce="n")) == directives(PAGE_CSP.format(nonce="n"))
