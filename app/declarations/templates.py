"""Declaration templates: a versioned list of questions plus the statement the recipient accepts.

Pure data and validation (no database): the service layer stores a ``TemplateSpec`` as a
template version and pins a ``snapshot`` of it on every declaration it sends. Built-in
templates are JSON files in ``builtin/`` with stable ids derived from their keys, so the same
built-in has the same id in every firm and every deployment.
"""

from __future__ import annotations

import functools
import json
import unicodedata
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.auth.mails import name_for_mail
from app.visible import Unshown, shown_otherwise

BUILTIN_DIR = Path(__file__).parent / "builtin"
# Fixed forever: built-in template ids are uuid5(BUILTIN_NAMESPACE, "coverproof.builtin.<key>"),
# and declarations already sent refer to them.
BUILTIN_NAMESPACE = uuid.UUID("44d68747-de27-43d0-8ef0-b41c31b26816")

TEXT_LIMITS = {"short_text": 200, "long_text": 5000}
MAX_TEXT_LIMIT = 20_000
MAX_PENCE = 10**12  # £10 billion: far above any limit of indemnity, far below int64 overflow
SNAPSHOT_SPEC_KEYS = ("name", "audience", "questions", "attestation")

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
HelpText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
ChoiceText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Pence = Annotated[int, Field(ge=0, le=MAX_PENCE)]


class QuestionKind(StrEnum):
    yes_no = "yes_no"
    short_text = "short_text"
    long_text = "long_text"
    date = "date"
    money = "money"
    choice = "choice"


_TEXT_KINDS = frozenset({QuestionKind.short_text, QuestionKind.long_text})
# Which options belong to which kinds; anything else set on a question is a mistake to report.
_OPTION_KINDS: dict[str, frozenset[QuestionKind]] = {
    "explain_if": frozenset({QuestionKind.yes_no}),
    "explain_label": frozenset({QuestionKind.yes_no}),
    "choices": frozenset({QuestionKind.choice}),
    "max_length": _TEXT_KINDS,
    "min_pence": frozenset({QuestionKind.money}),
    "max_pence": frozenset({QuestionKind.money}),
}


class Question(BaseModel):
    """One question. Options that do not apply to its kind are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    label: Label
    kind: QuestionKind
    required: bool = True
    help: HelpText | None = None
    explain_if: Literal["yes", "no"] | None = None
    explain_label: Label | None = None
    # Tuples rather than lists so a frozen spec is hashable (answers models are cached by spec).
    choices: Annotated[tuple[ChoiceText, ...], Field(min_length=2, max_length=50)] | None = None
    max_length: Annotated[int, Field(ge=1, le=MAX_TEXT_LIMIT)] | None = None
    min_pence: Pence | None = None
    max_pence: Pence | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        # Defaults are written into the question itself, so a pinned snapshot keeps the limits
        # it was sent with even if these defaults change later.
        if not isinstance(data, dict):
            return data
        kind, filled = data.get("kind"), dict(data)
        if not isinstance(kind, str):
            return data  # the kind's own error says what is wrong
        if kind in TEXT_LIMITS and filled.get("max_length") is None:
            filled["max_length"] = TEXT_LIMITS[kind]
        if kind == QuestionKind.money:
            if filled.get("min_pence") is None:
                filled["min_pence"] = 0
            if filled.get("max_pence") is None:
                filled["max_pence"] = MAX_PENCE
        return filled

    @model_validator(mode="after")
    def _options_match_kind(self) -> Question:
        problems = [
            f"{option} applies only to {' or '.join(sorted(kinds))} questions"
            for option, kinds in _OPTION_KINDS.items()
            if getattr(self, option) is not None and self.kind not in kinds
        ]
        if self.kind == QuestionKind.choice:
            if self.choices is None:
                problems.append("a choice question needs a list of choices")
            elif len(set(self.choices)) != len(self.choices):
                problems.append("choices must be different from each other")
        if self.explain_label is not None and self.explain_if is None:
            problems.append("explain_label needs explain_if")
        if (
            self.min_pence is not None
            and self.max_pence is not None
            and self.min_pence > self.max_pence
        ):
            problems.append("min_pence must not be more than max_pence")
        if problems:
            raise ValueError(f"Question {self.id!r}: " + "; ".join(problems) + ".")
        return self


def explanation_key(question_id: str) -> str:
    """The answer key for the explanation a yes/no question may require."""
    return f"{question_id}_explanation"


class TemplateSpec(BaseModel):
    """What a template version says: its questions and the statement the recipient accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    audience: Literal["person", "counterparty"]
    questions: Annotated[tuple[Question, ...], Field(min_length=1, max_length=100)]
    attestation: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ]

    @model_validator(mode="after")
    def _unique_answer_keys(self) -> TemplateSpec:
        # Explanations are answered under "<id>_explanation", so that name is taken too.
        seen: set[str] = set()
        duplicates: list[str] = []
        for question in self.questions:
            keys = [question.id]
            if question.explain_if is not None:
                keys.append(explanation_key(question.id))
            for key in keys:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        if duplicates:
            raise ValueError(f"Question ids must be unique: {', '.join(duplicates)} repeated.")
        return self


_FORM_REFUSALS: dict[Unshown, str] = {
    "reorders": "A form's text may not hold characters that reorder it.",
    "control": "A form's text may not hold control characters.",
    "hides": "A form's text may not hold characters that show as nothing.",
}


# Shown as nothing, but what some scripts and emoji need: a joiner (ZWNJ, ZWJ) between two of
# their characters, a variation selector after one. Anywhere else, or in runs, such characters
# could spell hidden text, as tag characters do; so could an unassigned code point.
class NewTemplateSpec(TemplateSpec):
    """A template as a firm writes it now. Its name goes into the mails sent from our address,
    so it is held to what they may carry; stored versions are read as they were written."""

    @field_validator("name")
    @classmethod
    def _for_mail(cls, name: str) -> str:
        return name_for_mail(name)

    @model_validator(mode="after")
    def _shown_as_stored(self) -> NewTemplateSpec:
        # What the recipient reads is what is stored, hashed and put in the pack: a bidi control
        # would show "I \u202eton\u202c agree" on the page as "I not agree". Lines break only
        # where a text may run to several (help, the attestation).
        texts = [(self.name, False), (self.attestation, True)]
        for question in self.questions:
            texts += [(question.label, False), (question.explain_label or "", False)]
            texts += [(question.help or "", True), *((c, False) for c in question.choices or ())]
        for text, lines in texts:
            problem = shown_otherwise(text, lines=lines)
            if problem is not None:
                raise ValueError(_FORM_REFUSALS[problem])
        for question in self.questions:
            # Two choices that read alike ("café" composed and decomposed, "Yes" and "yes", a
            # space and a no-break space) were two answers the form, its answers and the pack
            # showed as one.
            read = [_as_read(choice) for choice in question.choices or ()]
            if len(set(read)) != len(read):
                raise ValueError(f"Question {question.id!r}: choices must read differently.")
        return self


def _as_read(text: str) -> str:
    """``text`` as a reader tells it from another: compatibility forms, case and runs of
    spaces alike."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class BuiltinTemplate:
    """A template shipped with the product, the same in every firm."""

    key: str
    id: uuid.UUID
    version: int
    spec: TemplateSpec


def builtin_id(key: str) -> uuid.UUID:
    """The stable id of the built-in template with this key."""
    return uuid.uuid5(BUILTIN_NAMESPACE, "coverproof.builtin." + key)


def _load_file(path: Path) -> BuiltinTemplate:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    key, version = data.pop("key", None), data.pop("version", None)
    # The key names the file so that two files can never claim the same id.
    if key != path.stem:
        raise ValueError(f"{path.name}: key must be {path.stem!r}, not {key!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path.name}: version must be a whole number from 1")
    try:
        spec = TemplateSpec.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    return BuiltinTemplate(key=key, id=builtin_id(key), version=version, spec=spec)


@functools.cache
def load_builtins() -> tuple[BuiltinTemplate, ...]:
    """Every built-in template, in file-name order; read once, on first use."""
    return tuple(_load_file(path) for path in sorted(BUILTIN_DIR.glob("*.json")))


def builtin(template_id: uuid.UUID) -> BuiltinTemplate | None:
    """The built-in template with this id, or None if it is not a built-in."""
    return next((b for b in load_builtins() if b.id == template_id), None)


def snapshot(
    spec: TemplateSpec, *, template_id: uuid.UUID, version: int, key: str | None
) -> dict[str, Any]:
    """The JSON-able copy of a template version pinned on a declaration when it is sent."""
    return {
        "template_id": str(template_id),
        "key": key,
        "version": version,
        **spec.model_dump(mode="json"),
    }


def spec_from_snapshot(snapshot: dict[str, Any]) -> TemplateSpec:
    """The template version a declaration was sent with, from its pinned snapshot."""
    return TemplateSpec.model_validate(
        {k: snapshot[k] for k in SNAPSHOT_SPEC_KEYS if k in snapshot}
    )
