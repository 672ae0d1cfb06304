"""Validated inputs for the sign-in flows (pydantic, strict: unknown keys are refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from app.firms.schemas import FirmName, Frn
from app.idempotency import Key
from app.mail.outbox import one_address
from app.visible import shown_otherwise

MAX_EMAIL = 320


def _still_short(email: str) -> str:
    # Lowering comes after the length check, and may lengthen: "İ" lowers to two characters.
    if len(email) > MAX_EMAIL:
        raise ValueError(f"An address is at most {MAX_EMAIL} characters.")
    return email


def _one_address(email: str) -> str:
    """An address alone, as mail reads it: mail reads a display name, a comment, a second
    address or an encoded word too, and delivered to the address it finds there, counted
    apart from it ("x<a@b.co>", "a(1)@b.co", "someone,a@b.co" all reach a@b.co, or another),
    and an address whole in quotes ('"a@b.co"') reaches a@b.co too (``one_address``)."""
    problem = shown_otherwise(email)
    if not one_address(email) or problem == "control" or "=?" in email:
        raise ValueError("Enter one email address on its own, like name@example.com.")
    if problem is not None:
        # Listed to members and printed in packs: "ops@\u202eoc.knab" shows as ops@bank.co.
        raise ValueError("An address may not hold characters that reorder it or show as nothing.")
    return email


Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=MAX_EMAIL,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    ),
    AfterValidator(_still_short),
    AfterValidator(_one_address),
]
Password = Annotated[str, StringConstraints(max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(Strict):
    email: Email
    password: Password | None = None
    firm_name: FirmName
    frn: Frn | None = None


class EmailOnly(Strict):
    email: Email


class Invitation(Strict):
    email: Email
    idempotency_key: Key | None = None


class PasswordSignIn(Strict):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
