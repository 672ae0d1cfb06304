"""GraphiQL for development, under the narrowest CSP that lets it run (per-response nonce)."""

from __future__ import annotations

import secrets

from strawberry.http.ides import get_graphql_ide_html

_CDN = "https://unpkg.com"


def graphiql_page() -> tuple[str, int, dict[str, str]]:
    """The page, its status and headers: only our nonce-tagged scripts and the pinned CDN run."""
    nonce = secrets.token_urlsafe(16)
    html = get_graphql_ide_html("graphiql")
    html = html.replace("<script", f'<script nonce="{nonce}"').replace(
        "<style", f'<style nonce="{nonce}"'
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}' {_CDN}; "
        f"style-src 'nonce-{nonce}' {_CDN}; style-src-attr 'unsafe-inline'; "
        f"img-src 'self' data:; font-src {_CDN} data:; connect-src 'self'; "
        "base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'none'"
    )
    return html, 200, {"content-security-policy": csp, "cache-control": "no-store"}
