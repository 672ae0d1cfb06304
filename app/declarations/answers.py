"""Strict validation of a recipient's answers against the template version they were sent.

``answers_model`` turns a ``TemplateSpec`` into a pydantic model (one field per question, unknown
keys refused); ``validate_answers`` runs it and turns every problem into a per-question message
a person can act on, all at once, as ``BadUserInput(fields=[...])``.

Answers arrive as JSON: yes/no is ``true``/``false``, text is a string, a date is
``"YYYY-MM-DD"``, money is a whole number of pence, a choice is one of the listed strings, and
a yes/no question with ``explain_if`` takes its explanation under ``"<id>_explanation"``.
Text is held to what it shows (``visible.shown_otherwise``), once the paste debris that shows as
nothing is dropped: a short text is one line, a long text and an explanation may run to several.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from app.declarations.templates import (
    TEXT_LIMITS,
    Question,
    QuestionKind,
    TemplateSpec,
    explanation_key,
)
from app.errors import BadUserInput
from app.visible import Unshown, shown_otherwise, shows_anything

MAX_EXPLANATION = 5000
# Lines in one long answer or explanation: paragraphs enough for any statement, while the pack
# prints each line as a paragraph, some half a millisecond each, and a recipient's thousands of
# line feeds in each of a form's answers could take a pack past its time to render.
MAX_LINES = 200
MIN_YEAR, MAX_YEAR = 1900, 2200
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
ANSWER_REQUIRED = "This question must be answered."


def _parse_date(value: object) -> object:
    # Only ISO strings (or dates, for Python callers): pydantic's lax mode would read 20240101
    # as a Unix timestamp, which no recipient means.
    if value is None:
        return None  # the field's own required/optional handling speaks for a missing date
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _ISO_DATE.match(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "date_invalid", "{value} is not a real date.", {"value": value}
            ) from None
    else:
        raise PydanticCustomError("date_format", "Enter a date as YYYY-MM-DD, e.g. 2025-03-31.")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise PydanticCustomError(
            "date_range", f"Enter a date between {MIN_YEAR}-01-01 and {MAX_YEAR}-12-31."
        )
    return parsed


# Answers are listed to members, printed in the pack and hashed into the receipt as stored, so
# they are held to what signatures and form text are: "I have \u202esnoitcivnoc on\u202c"
# would show as "I have no convictions" while the record says otherwise.
_REFUSALS: dict[Unshown, str] = {
    "reorders": "An answer may not hold characters that reorder text (bidi embeddings, "
    "overrides, isolates or direction marks): type it without them.",
    "control": "An answer may not hold control characters; line breaks and tabs are fine.",
    "hides": "An answer may not hold characters that show as nothing, which pasted text can "
    "carry: type the answer rather than paste it.",
}
_ONE_LINE = "Write this answer on one line, without control characters."
# What an answer may hold that shown_otherwise, written for names, refuses: a tab, which shows
# as white space even on one line. Checked as a space, so no joiner or selector leans on one.
# Not the direction marks (left-to-right, right-to-left, Arabic letter), though Hebrew and Arabic
# keyboards type them: beside digits and punctuation a mark reorders what shows ("Owed \u200f100
# - 2000\u200f" reads "Owed 2000 - 100").
_PASSING = str.maketrans({"\t": " "})


# A browser's text box sends line feeds; a client on Windows may send CRLF (or CR), and text
# pasted from Word or a PDF may hold a line or paragraph separator (U+2028, U+2029) or a next
# line (U+0085). Each ends a line as it shows, and is stored as the line feed the page would
# have sent, not refused as a control character.
_LINE_END = re.compile("\r\n|[\r\x85\u2028\u2029]")

# What text pasted from Word, a PDF or a web page carries and shows as nothing: a soft hyphen
# (shown, as a hyphen, only where a line happens to break at it), a zero-width space, a word
# joiner, a byte order mark. The recipient cannot see them, so could not remove them were they
# refused; they carry no word, only bits. Dropping them changes nothing shown, so what is
# stored, listed, printed in the pack and hashed into the receipt (the receipt covers the
# answer as stored, without them) is what the recipient saw.
_DEBRIS = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


def _as_shown(*, lines: bool) -> Callable[[object], object]:
    def normalise(value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.translate(_DEBRIS)
        return _LINE_END.sub("\n", value) if lines else value

    return normalise


def _shown_as_stored(*, required: bool, lines: bool) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        # Only spaces, or only what is not shown (a joiner), is no answer, not an
        # answer of "" nor one refused for what it hides.
        if not shows_anything(value):
            if required:
                raise PydanticCustomError("string_too_short", ANSWER_REQUIRED)
            return None
        if lines and value.count("\n") >= MAX_LINES:
            raise PydanticCustomError(
                "answer_lines", f"Write this answer in at most {MAX_LINES} lines."
            )
        problem = shown_otherwise(value.translate(_PASSING), lines=lines)
        if problem is not None:
            message = _ONE_LINE if problem == "control" and not lines else _REFUSALS[problem]
            raise PydanticCustomError(f"answer_{problem}", message)
        return value

    return check


def _text(max_length: int, *, required: bool, lines: bool) -> Any:
    """Text as stored: without paste debris or white space at its ends, within its length,
    shown as it is stored; ``lines`` lets it run to several lines (a long text, an
    explanation), else it is one line."""
    constraints = StringConstraints(
        strip_whitespace=True,
        strict=True,
        min_length=1 if required else None,
        max_length=max_length,
    )
    shown = AfterValidator(_shown_as_stored(required=required, lines=lines))
    return Annotated[str, constraints, shown, BeforeValidator(_as_shown(lines=lines))]


def _answer_type(question: Question) -> Any:
    match question.kind:
        case QuestionKind.yes_no:
            return StrictBool
        case QuestionKind.short_text | QuestionKind.long_text:
            limit = question.max_length or TEXT_LIMITS[question.kind]
            lines = question.kind is QuestionKind.long_text
            return _text(limit, required=question.required, lines=lines)
        case QuestionKind.date:
            return Annotated[date, BeforeValidator(_parse_date)]
        case QuestionKind.money:
            return Annotated[StrictInt, Field(ge=question.min_pence, le=question.max_pence)]
        case QuestionKind.choice:
            return Literal.__getitem__(question.choices)
    raise AssertionError(f"unhandled question kind {question.kind}")  # pragma: no cover


def _explanation_check(question: Question, answer_field: str) -> Callable[..., str | None]:
    trigger = question.explain_if == "yes"

    def check(value: str | None, info: ValidationInfo) -> str | None:
        # info.data holds the yes/no answer (None if an optional one was left out) only if it
        # was valid; if not, it has its own error and the explanation is not judged by it.
        if answer_field not in info.data:
            return value
        called_for = info.data[answer_field] is trigger
        if value is None and called_for:
            raise PydanticCustomError(
                "explanation_missing",
                f"An explanation is required when the answer is {question.explain_if}.",
            )
        # One beside the other answer, or no answer, would be kept and printed in the pack
        # under an answer it contradicts ("No ... Explanation: Convicted of fraud in 2019.").
        if value is not None and not called_for:
            raise PydanticCustomError(
                "explanation_not_asked",
                f"Give an explanation only when the answer is {question.explain_if}.",
            )
        return value

    return check


@functools.lru_cache(maxsize=256)
def answers_model(spec: TemplateSpec) -> type[BaseModel]:
    """The pydantic model for answers to this template version (cached per spec).

    Fields have internal names (``Q0``, ``E0``) and the question ids as aliases, so a question
    id such as ``copy`` or ``model_config`` cannot collide with pydantic's own attributes; the
    names are upper case so they can never be question ids (lower-case slugs) either.
    """
    fields: dict[str, Any] = {}
    for index, question in enumerate(spec.questions):
        name, answer = f"Q{index}", _answer_type(question)
        if question.required:
            fields[name] = (answer, Field(alias=question.id))
        else:
            fields[name] = (answer | None, Field(default=None, alias=question.id))
        if question.explain_if is not None:
            # Declared after its question so the check sees the yes/no answer in info.data;
            # validate_default so it runs when the explanation is left out altogether.
            explanation: Any = Annotated[
                _text(MAX_EXPLANATION, required=False, lines=True) | None,
                AfterValidator(_explanation_check(question, name)),
            ]
            fields[f"E{index}"] = (
                explanation,
                Field(default=None, alias=explanation_key(question.id), validate_default=True),
            )
    model: type[BaseModel] = create_model(
        "Answers", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _pounds(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d} ({pence} pence)"


def _message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    # An explicit null for a required question is the same mistake as leaving it out.
    if (kind.endswith("_type") or kind == "literal_error") and error.get("input", ...) is None:
        return ANSWER_REQUIRED
    messages: dict[str, Callable[[], str]] = {
        "extra_forbidden": lambda: "Unknown question.",
        "missing": lambda: ANSWER_REQUIRED,
        "string_too_short": lambda: ANSWER_REQUIRED,  # only required text has a minimum
        "string_too_long": lambda: f"Use at most {ctx['max_length']} characters.",
        "string_type": lambda: "Enter text.",
        "bool_type": lambda: "Answer yes (true) or no (false).",
        "int_type": lambda: "Enter a whole number of pence, e.g. 150000 for £1,500.00.",
        "greater_than_equal": lambda: f"Enter at least {_pounds(int(ctx['ge']))}.",
        "less_than_equal": lambda: f"Enter at most {_pounds(int(ctx['le']))}.",
        "literal_error": lambda: f"Choose one of: {ctx['expected']}.",
    }
    message = messages.get(kind)
    return message() if message else error["msg"]


def validate_answers(spec: TemplateSpec, answers: object) -> dict[str, object]:
    """Normalised, JSON-able answers, or ``BadUserInput`` listing every problem at once.

    The result has every question id (``None`` for an unanswered optional question) and each
    ``<id>_explanation`` that was given; text is stripped and dates are ISO strings.
    """
    if not isinstance(answers, dict):
        raise BadUserInput(
            fields=[{"field": "answers", "message": "Answers must be an object keyed by question."}]
        )
    model = answers_model(spec)
    try:
        parsed = model.model_validate(answers)
    except ValidationError as exc:
        fields: list[dict[str, str]] = []
        for error in exc.errors(include_url=False):
            # A defaulted field (a left-out explanation) is reported under its internal name.
            key = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] != "extra_forbidden" and key in model.model_fields:
                key = model.model_fields[key].alias or key
            field = f"answers.{key}" if key else "answers"
            fields.append({"field": field, "message": _message(error)})
        raise BadUserInput(fields=fields) from None
    dumped = parsed.model_dump(mode="json", by_alias=True)
    explanations = {explanation_key(q.id) for q in spec.questions if q.explain_if is not None}
    return {k: v for k, v in dumped.items() if v is not None or k not in explanations}
