"""Validated inputs for firm services."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.auth.mails import name_for_mail

FirmName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(name_for_mail),  # as mails, and PDF headings, show it
]
Frn = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6,7}$")]


class FirmUpdate(BaseModel):
    """Only the fields the caller sent are changed; ``frn: null`` clears the FRN."""

    model_config = ConfigDict(extra="forbid")

    name: FirmName = Field(default=None)  # type: ignore[assignment]
    frn: Frn | None = None
