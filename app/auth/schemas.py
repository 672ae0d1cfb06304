"""Validated inputs for the sign-in flows (pydantic, strict: unknown keys are refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from app.firms.schemas import FirmName, Frn
from app.idempotency import Key

MAX_EMAIL = 320


def _still_short(email: str) -> str:
    # Lowering comes after the length check, and may lengthen: "İ" lowers to two characters.
    if len(email) > MAX_EMAIL:
        raise ValueError(f"An address is at most {MAX_EMAIL} characters.")
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
