"""The emails the sign-in flows send: a plain-text and an HTML body, each with one link."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import quote


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def compose(subject: str, intro: str, action: str, url: str, outro: str) -> Mail:
    text = f"{intro}\n\n{action}:\n{url}\n\n{outro}\n\n-- CoverProof\n"
    html = (
        f"<p>{escape(intro)}</p>"
        f'<p><a href="{escape(url)}">{escape(action)}</a></p>'
        f"<p>{escape(outro)}</p><p>-- CoverProof</p>"
    )
    return Mail(subject, text, html)


def link(base_url: str, page: str, token: str) -> str:
    """Tokens travel in the fragment: browsers never send it to a server or in a Referer."""
    return f"{base_url}/auth/{page}#token={quote(token, safe='')}"


def verification(url: str) -> Mail:
    return compose(
        "Confirm your email address",
        "Welcome to CoverProof. Confirm your email address to open your firm's dashboard.",
        "Confirm my email address",
        url,
        "The link works once and expires in 24 hours. If you did not sign up, ignore this email.",
    )


def magic_link(url: str) -> Mail:
    return compose(
        "Your CoverProof sign-in link",
        "Use this link to sign in to CoverProof.",
        "Sign in",
        url,
        "The link works once and expires in 10 minutes. If you did not ask for it, ignore it.",
    )


def password_reset(url: str) -> Mail:
    return compose(
        "Reset your CoverProof password",
        "Someone asked to reset the password for this address.",
        "Choose a new password",
        url,
        "The link works once and expires in 1 hour. Resetting signs you out everywhere.",
    )


def invitation(url: str, firm_name: str, role: str) -> Mail:
    return compose(
        f"You are invited to {firm_name} on CoverProof",
        f"You have been invited to join {firm_name} on CoverProof as {role}.",
        "Accept the invitation",
        url,
        "The link works once and expires in 7 days.",
    )


def sign_up_attempt(sign_in_url: str) -> Mail:
    return compose(
        "Someone tried to sign up with your address",
        "Someone tried to create a CoverProof account with this address, which already has one.",
        "Sign in instead",
        sign_in_url,
        "If this was not you, you can ignore this email; nothing has changed.",
    )
