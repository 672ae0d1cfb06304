"""Validated inputs for the sign-in flows (pydantic, strict: unknown keys are refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.firms.schemas import FirmName, Frn
from app.idempotency import Key

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    ),
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
