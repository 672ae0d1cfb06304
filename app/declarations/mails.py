"""The emails recipients receive: a request and a reminder, each with the single-use link, and
the confirmation of a submission, with its receipt."""

from __future__ import annotations

from datetime import date, datetime
from html import escape

from app.auth.mails import Mail, compose, shown


def request(url: str, firm_name: str, template_name: str, due: date | None) -> Mail:
    by = f" by {due:%d %B %Y}" if due else ""
    return compose(
        f"{firm_name} asks you to complete: {template_name}",
        f"{firm_name} uses CoverProof to collect its {template_name}. Please complete it{by}.",
        "Open the form",
        url,
        "The link is personal to you and works for one submission. You do not need an account.",
    )


def reminder(url: str, firm_name: str, template_name: str, due: date | None) -> Mail:
    by = f" It is due by {due:%d %B %Y}." if due else ""
    return compose(
        f"Reminder: {template_name} for {firm_name}",
        f"{firm_name} is still waiting for your {template_name}.{by}",
        "Open the form",
        url,
        "This link replaces any earlier one, which no longer works.",
    )


def received(firm_name: str, template_name: str, at: datetime, receipt: str) -> Mail:
    """What was received and when, with the receipt the firm's record holds: the recipient can
    later show what they submitted, and learns if someone else used their link. Not the
    answers (an email is no place for them) and no link (theirs is spent)."""
    lines = [
        shown(line)
        for line in (
            f"{firm_name} has received your {template_name}, submitted on "
            f"{at:%d %B %Y at %H:%M:%S} UTC.",
            f"Receipt (SHA-256 of your response): {receipt}",
            f"Keep this email. If you did not submit this, tell {firm_name} at once.",
        )
    ]
    text = "\n\n".join(lines) + "\n\n-- CoverProof\n"
    html = "".join(f"<p>{escape(line)}</p>" for line in lines) + "<p>-- CoverProof</p>"
    return Mail(shown(f"Received: your {template_name} for {firm_name}"), text, html)
