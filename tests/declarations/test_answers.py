"""Answers are validated strictly against the pinned template; every problem is reported."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from app.declarations.answers import MAX_LINES, answers_model, validate_answers
from app.declarations.templates import TemplateSpec, builtin, builtin_id
from app.errors import BadUserInput

SPEC = TemplateSpec.model_validate(
    {
        "name": "Every kind",
        "audience": "person",
        "attestation": "I confirm.",
        "questions": [
            {"id": "convicted", "label": "Convicted?", "kind": "yes_no", "explain_if": "yes"},
            {"id": "covered", "label": "Covered?", "kind": "yes_no", "explain_if": "no"},
            {"id": "role", "label": "Role", "kind": "short_text", "max_length": 10},
            {"id": "notes", "label": "Notes", "kind": "long_text", "required": False},
            {"id": "started", "label": "Start", "kind": "date"},
            {
                "id": "limit",
                "label": "Limit",
                "kind": "money",
                "min_pence": 100,
                "max_pence": 10000,
            },
            {"id": "colour", "label": "Colour", "kind": "choice", "choices": ["red", "green"]},
            {"id": "smoker", "label": "Smoker?", "kind": "yes_no", "required": False},
            {"id": "ended", "label": "End", "kind": "date", "required": False},
            {"id": "bonus", "label": "Bonus", "kind": "money", "required": False},
            {
                "id": "size",
                "label": "Size",
                "kind": "choice",
                "choices": ["S", "M"],
                "required": False,
            },
        ],
    }
)

VALID: dict[str, Any] = {
    "convicted": False,
    "covered": True,
    "role": "Adviser",
    "started": "2024-02-29",
    "limit": 5000,
    "colour": "red",
}

NORMALISED: dict[str, Any] = {
    **VALID,
    "notes": None,
    "smoker": None,
    "ended": None,
    "bonus": None,
    "size": None,
}


def _errors(answers: object, spec: TemplateSpec = SPEC) -> list[dict[str, str]]:
    with pytest.raises(BadUserInput) as refused:
        validate_answers(spec, answers)
    assert refused.value.code == "BAD_USER_INPUT"
    fields: list[dict[str, str]] = refused.value.extensions["fields"]
    return fields


def _error(answers: object, field: str, message: str) -> None:
    assert _errors(answers) == [{"field": f"answers.{field}", "message": message}]


def test_valid_answers_are_normalised() -> None:
    assert validate_answers(SPEC, VALID) == NORMALISED


def test_every_optional_kind_accepts_a_valid_value() -> None:
    answers = {
        **VALID,
        "role": "  Adviser  ",
        "notes": "  Some notes. ",
        "smoker": False,
        "ended": "2200-12-31",
        "bonus": 0,
        "size": "M",
    }
    assert validate_answers(SPEC, answers) == {
        **NORMALISED,
        "role": "Adviser",
        "notes": "Some notes.",
        "smoker": False,
        "ended": "2200-12-31",
        "bonus": 0,
        "size": "M",
    }


@pytest.mark.parametrize("blank", ["   ", "\u200b", " \u00ad\u200d\ufe0f ", "\u2800 \u2800"])
def test_blank_optional_text_is_no_answer(blank: str) -> None:
    assert validate_answers(SPEC, {**VALID, "notes": blank})["notes"] is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("notes", "I \u202eton\u202c agree", "reorder text"),
        ("notes", "Yes\u2066 no\u2069", "reorder text"),
        ("notes", "None\x1b[8m at all", "control characters"),
        ("notes", "None\x7fat all", "control characters"),
        ("notes", "None\U000e0041", "show as nothing"),
        ("notes", "No\u200c\u200dne", "show as nothing"),  # joiners between Latin letters
        ("role", "CFO\nCEO", "one line"),
        ("role", "CFO\r\nCEO", "one line"),
        ("role", "CFO\u2028CEO", "one line"),
        ("role", "CFO\x85CEO", "one line"),
        ("role", "Advi\u202eser", "reorder text"),
        # The direction marks: beside digits and punctuation they reorder what shows.
        ("notes", "Owed \u200f100 - 2000\u200f", "reorder text"),  # reads "Owed 2000 - 100"
        ("role", "1\u200f/\u200f5/80", "reorder text"),
        ("notes", "\u0661\u061c-\u0662", "reorder text"),  # an Arabic letter mark
        ("notes", "Policy \u05d0\u200e-123", "reorder text"),  # a left-to-right mark
    ],
)
def test_text_shown_otherwise_than_stored_is_refused(field: str, value: str, message: str) -> None:
    [error] = _errors({**VALID, field: value})
    assert error["field"] == f"answers.{field}"
    assert message in error["message"], error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "CFO\tCEO"),  # a tab pasted into one line shows as white space
        ("notes", "\u05de\u05e0\u05d4\u05dc (2019)"),  # Hebrew, without marks
        ("notes", "\u0661-\u0662 \u0645\u062f\u064a\u0631"),  # Arabic, without marks
    ],
)
def test_a_tab_and_right_to_left_text_are_kept(field: str, value: str) -> None:
    assert validate_answers(SPEC, {**VALID, field: value})[field] == value


@pytest.mark.parametrize(
    ("answers", "field", "stored"),
    [
        ({"notes": "Pasted from Word: com\u00adpliance"}, "notes", "Pasted from Word: compliance"),
        ({"notes": "\ufeffFrom a PDF\u200b: cover\u2060ed"}, "notes", "From a PDF: covered"),
        ({"role": "Ad\u00advi\u00adser\u200b\u200b\u200b\u200b"}, "role", "Adviser"),  # 7 of 10
        ({"role": "\u200b CFO \ufeff"}, "role", "CFO"),
        (
            {"convicted": True, "convicted_explanation": "\ufeffSpee\u00adding"},
            "convicted_explanation",
            "Speeding",
        ),
    ],
)
def test_paste_debris_that_shows_as_nothing_is_dropped(
    answers: dict[str, Any], field: str, stored: str
) -> None:
    """A soft hyphen, zero-width space, word joiner and byte order mark, which the recipient
    cannot see to remove, are dropped before the answer is checked, measured and stored."""
    assert validate_answers(SPEC, {**VALID, **answers})[field] == stored


def test_long_text_keeps_its_lines_and_stores_other_line_ends_as_line_feeds() -> None:
    notes = "Line one.\r\nLine two.\rLine three.\n\tIndented.\u2028Four.\u2029Five.\x85Six."
    expected = "Line one.\nLine two.\nLine three.\n\tIndented.\nFour.\nFive.\nSix."
    assert validate_answers(SPEC, {**VALID, "notes": notes})["notes"] == expected


def test_a_date_object_is_accepted_from_python_callers() -> None:
    assert validate_answers(SPEC, {**VALID, "started": date(1900, 1, 1)})["started"] == "1900-01-01"


@pytest.mark.parametrize("field", ["convicted", "covered", "role", "started", "limit", "colour"])
def test_required_questions_must_be_answered(field: str) -> None:
    without = {k: v for k, v in VALID.items() if k != field}
    _error(without, field, "This question must be answered.")
    _error({**VALID, field: None}, field, "This question must be answered.")


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
def test_yes_no_takes_only_true_or_false(value: object) -> None:
    message = (
        "This question must be answered." if value is None else ("Answer yes (true) or no (false).")
    )
    _error({**VALID, "convicted": value}, "convicted", message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "This question must be answered."),
        ("   \n\t ", "This question must be answered."),
        # Only what is not shown: a zero-width space, a soft hyphen, a joiner.
        ("\u200b\u00ad\u200d", "This question must be answered."),
        ("x" * 11, "Use at most 10 characters."),
        (42, "Enter text."),
        (["Adviser"], "Enter text."),
    ],
)
def test_short_text_refuses_blank_long_and_non_text(value: object, message: str) -> None:
    _error({**VALID, "role": value}, "role", message)


def test_text_length_is_counted_after_stripping() -> None:
    assert validate_answers(SPEC, {**VALID, "role": "  " + "x" * 10 + "  "})["role"] == "x" * 10


def test_long_text_has_its_default_limit() -> None:
    assert validate_answers(SPEC, {**VALID, "notes": "x" * 5000})["notes"] == "x" * 5000
    _error({**VALID, "notes": "x" * 5001}, "notes", "Use at most 5000 characters.")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-02-30", "2024-02-30 is not a real date."),
        ("2023-02-29", "2023-02-29 is not a real date."),
        ("yesterday", "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        (20240101, "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        ("01/02/2024", "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        (" 2024-01-01", "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        ("2024-01-01T00:00:00", "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        (datetime(2024, 1, 1), "Enter a date as YYYY-MM-DD, e.g. 2025-03-31."),
        ("1899-12-31", "Enter a date between 1900-01-01 and 2200-12-31."),
        ("2201-01-01", "Enter a date between 1900-01-01 and 2200-12-31."),
    ],
)
def test_dates_must_be_real_iso_dates(value: object, message: str) -> None:
    _error({**VALID, "started": value}, "started", message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (150.0, "Enter a whole number of pence, e.g. 150000 for £1,500.00."),
        (150.5, "Enter a whole number of pence, e.g. 150000 for £1,500.00."),
        (True, "Enter a whole number of pence, e.g. 150000 for £1,500.00."),
        ("150", "Enter a whole number of pence, e.g. 150000 for £1,500.00."),
        (99, "Enter at least £1.00 (100 pence)."),
        (-1, "Enter at least £1.00 (100 pence)."),
        (10001, "Enter at most £100.00 (10000 pence)."),
    ],
)
def test_money_is_whole_pence_within_bounds(value: object, message: str) -> None:
    _error({**VALID, "limit": value}, "limit", message)


@pytest.mark.parametrize("value", [100, 10000])
def test_money_bounds_are_inclusive(value: int) -> None:
    assert validate_answers(SPEC, {**VALID, "limit": value})["limit"] == value


def test_money_default_bounds_refuse_negative_and_huge_amounts() -> None:
    _error({**VALID, "bonus": -5}, "bonus", "Enter at least £0.00 (0 pence).")
    _error(
        {**VALID, "bonus": 10**12 + 1},
        "bonus",
        "Enter at most £10,000,000,000.00 (1000000000000 pence).",
    )


@pytest.mark.parametrize("value", ["blue", "Red", " red", 1])
def test_choice_refuses_values_not_listed(value: object) -> None:
    _error({**VALID, "colour": value}, "colour", "Choose one of: 'red' or 'green'.")


def test_explanation_is_required_when_the_answer_triggers_it() -> None:
    message = "An explanation is required when the answer is yes."
    _error({**VALID, "convicted": True}, "convicted_explanation", message)
    for blank in ("  ", "\u200b"):
        _error(
            {**VALID, "convicted": True, "convicted_explanation": blank},
            "convicted_explanation",
            message,
        )
    _error(
        {**VALID, "covered": False},
        "covered_explanation",
        "An explanation is required when the answer is no.",
    )
    answers = {**VALID, "convicted": True, "convicted_explanation": " Speeding, 2019. "}
    assert validate_answers(SPEC, answers) == {
        **NORMALISED,
        "convicted": True,
        "convicted_explanation": "Speeding, 2019.",
    }


def test_an_explanation_the_answer_does_not_call_for_is_refused() -> None:
    """It would be kept and printed in the pack under an answer it contradicts ("No ...
    Explanation: Convicted of fraud in 2019."); a blank one is no explanation."""
    assert "covered_explanation" not in validate_answers(SPEC, VALID)
    _error(
        {**VALID, "covered_explanation": "Fully covered."},
        "covered_explanation",
        "Give an explanation only when the answer is no.",
    )
    _error(
        {**VALID, "convicted_explanation": "Convicted of fraud in 2019."},
        "convicted_explanation",
        "Give an explanation only when the answer is yes.",
    )
    for blank in ("", "  ", "\u200b"):
        assert "convicted_explanation" not in validate_answers(
            SPEC, {**VALID, "convicted_explanation": blank}
        )


def test_an_explanation_beside_an_optional_yes_no_left_unanswered_is_refused() -> None:
    spec = TemplateSpec.model_validate(
        {
            "name": "Optional",
            "audience": "person",
            "attestation": "I confirm.",
            "questions": [
                {
                    "id": "other",
                    "label": "Other?",
                    "kind": "yes_no",
                    "required": False,
                    "explain_if": "yes",
                },
            ],
        }
    )
    assert validate_answers(spec, {}) == {"other": None}
    assert validate_answers(spec, {"other_explanation": " "}) == {"other": None}
    for answers in ({"other_explanation": "x"}, {"other": None, "other_explanation": "x"}):
        assert _errors(answers, spec) == [
            {
                "field": "answers.other_explanation",
                "message": "Give an explanation only when the answer is yes.",
            }
        ]


def test_explanation_has_a_length_limit_and_must_be_text() -> None:
    answers = {**VALID, "convicted": True, "convicted_explanation": "x" * 5001}
    _error(answers, "convicted_explanation", "Use at most 5000 characters.")
    _error({**VALID, "convicted_explanation": 7}, "convicted_explanation", "Enter text.")


def test_an_invalid_yes_no_does_not_also_demand_or_refuse_an_explanation() -> None:
    _error({**VALID, "convicted": "yes"}, "convicted", "Answer yes (true) or no (false).")
    answers = {**VALID, "convicted": "yes", "convicted_explanation": "Speeding, 2019."}
    _error(answers, "convicted", "Answer yes (true) or no (false).")


@pytest.mark.parametrize("key", ["unexpected", "Q0", "E0", "smoker_explanation"])
def test_unknown_keys_are_refused(key: str) -> None:
    _error({**VALID, key: "x"}, key, "Unknown question.")


@pytest.mark.parametrize("answers", [None, [], "answers", 1])
def test_answers_must_be_an_object(answers: object) -> None:
    assert _errors(answers) == [
        {"field": "answers", "message": "Answers must be an object keyed by question."}
    ]


def test_every_problem_is_reported_at_once() -> None:
    answers = {
        "convicted": True,
        "covered": True,
        "role": "x" * 11,
        "started": "2024-02-30",
        "limit": 1.5,
        "colour": "red",
        "nickname": "Al",
    }
    assert _errors(answers) == [
        {
            "field": "answers.convicted_explanation",
            "message": "An explanation is required when the answer is yes.",
        },
        {"field": "answers.role", "message": "Use at most 10 characters."},
        {"field": "answers.started", "message": "2024-02-30 is not a real date."},
        {
            "field": "answers.limit",
            "message": "Enter a whole number of pence, e.g. 150000 for £1,500.00.",
        },
        {"field": "answers.nickname", "message": "Unknown question."},
    ]


def test_an_empty_submission_lists_each_required_question() -> None:
    assert [e["field"] for e in _errors({})] == [
        f"answers.{q}" for q in ("convicted", "covered", "role", "started", "limit", "colour")
    ]


def test_question_ids_that_shadow_pydantic_names_work() -> None:
    spec = TemplateSpec.model_validate(
        {
            "name": "Shadowing",
            "audience": "person",
            "attestation": "I confirm.",
            "questions": [
                {"id": "model_config", "label": "A", "kind": "yes_no"},
                {"id": "copy", "label": "B", "kind": "short_text"},
            ],
        }
    )
    assert validate_answers(spec, {"model_config": True, "copy": "x"}) == {
        "model_config": True,
        "copy": "x",
    }


def test_question_ids_like_internal_field_names_are_reported_as_sent() -> None:
    spec = TemplateSpec.model_validate(
        {
            "name": "Lookalikes",
            "audience": "person",
            "attestation": "I confirm.",
            "questions": [
                {"id": "q1", "label": "A", "kind": "yes_no", "explain_if": "yes"},
                {"id": "e0", "label": "B", "kind": "short_text"},
            ],
        }
    )
    assert validate_answers(spec, {"q1": False, "e0": "x"}) == {"q1": False, "e0": "x"}
    assert _errors({"q1": True, "e0": 5}, spec) == [
        {
            "field": "answers.q1_explanation",
            "message": "An explanation is required when the answer is yes.",
        },
        {"field": "answers.e0", "message": "Enter text."},
    ]


def test_the_answers_model_is_cached_per_spec() -> None:
    same = TemplateSpec.model_validate(SPEC.model_dump())
    assert answers_model(same) is answers_model(SPEC)


def test_a_pi_cover_confirmation_validates() -> None:
    template = builtin(builtin_id("pi_cover"))
    assert template is not None
    answers = {
        "insurer": "Example Insurance plc",
        "policy_number": "PI-12345",
        "limit_of_indemnity": 100_000_000,
        "limit_basis": "Each and every claim",
        "excess": 250_000,
        "period_start": "2025-04-01",
        "period_end": "2026-03-31",
        "covers_our_activities": True,
        "claims_notified": False,
    }
    assert validate_answers(template.spec, answers) == answers
    assert _errors({**answers, "limit_of_indemnity": 0}, template.spec) == [
        {"field": "answers.limit_of_indemnity", "message": "Enter at least £0.01 (1 pence)."}
    ]


@pytest.mark.parametrize("field", ["notes", "convicted_explanation"])
def test_a_long_answer_runs_to_at_most_max_lines(field: str) -> None:
    """The pack prints each line as a paragraph: thousands of line feeds in each answer took a
    pack past its time to render, and a firm cannot narrow a pack below one declaration."""
    answers = {**VALID, "convicted": True} if field == "convicted_explanation" else VALID
    most = "\n".join(["line"] * MAX_LINES)
    assert validate_answers(SPEC, {**answers, field: most})[field] == most
    [error] = _errors({**answers, field: most + "\nline"})
    assert error["field"] == f"answers.{field}"
    assert error["message"] == f"Write this answer in at most {MAX_LINES} lines."
