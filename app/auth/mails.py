"""The emails the sign-in flows send: a plain-text and an HTML body, each with one link."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from app.visible import BIDI, ignorable, plain_name

# A host name (labels of letters, digits, hyphens and underscores, in any script, ending in a
# top-level domain of two letters or more, or a punycode one) or an IPv4 address: mail clients
# make a link of "coverproof-secure.example/login" as of "https://...", and one in a mail from
# our address would read as ours. "Co.Ltd" is one (.ltd is a top-level domain): written
# "Co. Ltd", it is not. A file's name ("Policy.pdf") is not, for the extensions below, which
# are no top-level domain.
_FILES = r"(?:pdf|docx?|xlsx?|pptx?|odt|ods|rtf|txt|csv)(?![^\W_])"
_HOST = re.compile(
    rf"(?<![^\W_])(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?!{_FILES})(?:[^\W\d_]{{2,}}|xn--[\w-]+)"
    r"(?![^\W_])|\b\d{1,3}(?:\.\d{1,3}){3}\b",
    re.IGNORECASE,
)
# Full stops a host name may be written with, which browsers and IDNA read as ".".
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _as_linked(name: str) -> str:
    """``name`` as a mail client or a browser may read it when it looks for a link: compatibility
    forms folded (fullwidth letters), other full stops as ".", and what is ignorable (a soft
    hyphen, a zero-width space, a variation selector) gone, as IDNA drops them."""
    folded = unicodedata.normalize("NFKC", name).translate(_DOTS)
    return "".join(c for c in folded if not ignorable(c))


_DROP_BIDI = dict.fromkeys(BIDI)


def shown(text: str) -> str:
    """Text with a firm's names in it, as a mail sent from our address shows it: on one line and
    without bidi controls, so that a name cannot add a paragraph of its own (one that reads as
    ours) or reorder what follows it; and no "=?", which mail would read as the start of an
    encoded word in a subject. Names held before ``name_for_mail`` refused these."""
    return " ".join(text.translate(_DROP_BIDI).split()).replace("=?", "= ?")


def name_for_mail(name: str) -> str:
    """A name a firm gives (its own, a form's), which mails sent from our address carry: a
    plain name (``plain_name``: one line, shown as stored), with no web address (a link there
    would read as ours) and no "=?" (how an encoded word begins: mail decodes one in a subject,
    CR LF and all)."""
    if "=?" in name:
        raise ValueError('A name may not hold "=?".')
    linked = _as_linked(name)
    if "://" in linked or "www." in linked.lower() or _HOST.search(linked):
        raise ValueError(
            "A name may not hold a web address or a domain name (put a space after a full stop)."
        )
    return plain_name(name)


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def compose(subject: str, intro: str, action: str, url: str, outro: str) -> Mail:
    subject, intro, outro = shown(subject), shown(intro), shown(outro)
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
