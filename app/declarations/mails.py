"""The emails recipients receive: a request and a reminder, each with the single-use link."""

from __future__ import annotations

from datetime import date

from app.auth.mails import Mail, compose


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
