"""Validated inputs for firm services."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _one_line(name: str) -> str:
    # As mail subjects and PDF headings show it: no line break, no other control character.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("A name is one line of text, without control characters.")
    return name


FirmName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
Frn = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6,7}$")]


class FirmUpdate(BaseModel):
    """Only the fields the caller sent are changed; ``frn: null`` clears the FRN."""

    model_config = ConfigDict(extra="forbid")

    name: FirmName = Field(default=None)  # type: ignore[assignment]
    frn: Frn | None = None
