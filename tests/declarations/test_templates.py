"""Template specs: which options belong to which question kind, built-ins, snapshots."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.declarations.templates import (
    BUILTIN_NAMESPACE,
    MAX_PENCE,
    Question,
    QuestionKind,
    TemplateSpec,
    _load_file,
    builtin,
    builtin_id,
    load_builtins,
    snapshot,
    spec_from_snapshot,
)


def _spec(*questions: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "Test",
        "audience": "person",
        "questions": list(questions),
        "attestation": "I confirm.",
    }


def _refusal(**question: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        Question.model_validate(question)
    return str(refused.value)


def test_every_kind_with_its_own_options_is_accepted() -> None:
    spec = TemplateSpec.model_validate(
        _spec(
            {
                "id": "a",
                "label": "A?",
                "kind": "yes_no",
                "explain_if": "no",
                "explain_label": "Why",
            },
            {"id": "b", "label": "B", "kind": "short_text", "max_length": 20},
            {"id": "c", "label": "C", "kind": "long_text", "required": False},
            {"id": "d", "label": "D", "kind": "date", "help": "A date"},
            {"id": "e", "label": "E", "kind": "money", "min_pence": 5, "max_pence": 5},
            {"id": "f", "label": "F", "kind": "choice", "choices": ["x", "y"]},
        )
    )
    assert [q.kind for q in spec.questions] == list(QuestionKind)
    assert spec.questions[0].explain_if == "no"
    assert spec.questions[5].choices == ("x", "y")


def test_defaults_are_written_into_the_question() -> None:
    short = Question(id="s", label="S", kind=QuestionKind.short_text)
    long = Question(id="l", label="L", kind=QuestionKind.long_text)
    money = Question(id="m", label="M", kind=QuestionKind.money)
    assert short.max_length == 200
    assert long.max_length == 5000
    assert (money.min_pence, money.max_pence) == (0, MAX_PENCE)
    assert Question(id="y", label="Y", kind=QuestionKind.yes_no).max_length is None


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ({"kind": "yes_no", "choices": ["a", "b"]}, "choices applies only to choice questions"),
        ({"kind": "money", "explain_if": "yes"}, "explain_if applies only to yes_no questions"),
        ({"kind": "date", "max_length": 10}, "max_length applies only to long_text or short_text"),
        ({"kind": "short_text", "min_pence": 1}, "min_pence applies only to money questions"),
        ({"kind": "choice", "max_pence": 1, "choices": ["a", "b"]}, "max_pence applies only"),
        ({"kind": "yes_no", "explain_label": "Why"}, "explain_label needs explain_if"),
        ({"kind": "choice"}, "a choice question needs a list of choices"),
        ({"kind": "choice", "choices": ["a", " a "]}, "choices must be different"),
        ({"kind": "money", "min_pence": 10, "max_pence": 9}, "min_pence must not be more than"),
    ],
)
def test_options_on_the_wrong_kind_are_refused(question: dict[str, Any], message: str) -> None:
    assert message in _refusal(id="q", label="Q", **question)


@pytest.mark.parametrize(
    "question",
    [
        {"id": "Upper", "label": "Q", "kind": "yes_no"},
        {"id": "1st", "label": "Q", "kind": "yes_no"},
        {"id": "a" * 41, "label": "Q", "kind": "yes_no"},
        {"id": "q", "label": "   ", "kind": "yes_no"},
        {"id": "q", "label": "x" * 501, "kind": "yes_no"},
        {"id": "q", "label": "Q", "kind": "essay"},
        {"id": "q", "label": "Q", "kind": "yes_no", "explain_if": "maybe"},
        {"id": "q", "label": "Q", "kind": "choice", "choices": ["only one"]},
        {"id": "q", "label": "Q", "kind": "choice", "choices": ["a", ""]},
        {"id": "q", "label": "Q", "kind": "short_text", "max_length": 20_001},
        {"id": "q", "label": "Q", "kind": "money", "max_pence": -1},
        {"id": "q", "label": "Q", "kind": "yes_no", "colour": "red"},
    ],
)
def test_malformed_questions_are_refused(question: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Question.model_validate(question)


def test_duplicate_question_ids_are_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        TemplateSpec.model_validate(
            _spec(
                {"id": "a", "label": "A", "kind": "yes_no"},
                {"id": "a", "label": "Again", "kind": "short_text"},
            )
        )
    assert "Question ids must be unique: a repeated." in str(refused.value)


def test_a_question_id_may_not_take_another_questions_explanation_key() -> None:
    with pytest.raises(ValidationError) as refused:
        TemplateSpec.model_validate(
            _spec(
                {"id": "a", "label": "A", "kind": "yes_no", "explain_if": "yes"},
                {"id": "a_explanation", "label": "More", "kind": "long_text"},
            )
        )
    assert "a_explanation repeated" in str(refused.value)


@pytest.mark.parametrize(
    "change",
    [
        {"questions": []},
        {"audience": "everyone"},
        {"attestation": " "},
        {"name": "x" * 201},
        {"unexpected": True},
    ],
)
def test_malformed_specs_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TemplateSpec.model_validate(
            {**_spec({"id": "a", "label": "A", "kind": "yes_no"}), **change}
        )


def test_the_three_builtins_load_with_stable_ids() -> None:
    builtins = {b.key: b for b in load_builtins()}
    assert set(builtins) == {"fit_and_proper", "conflicts_of_interest", "pi_cover"}
    # Literal ids: declarations already sent refer to them, so they must never change.
    assert builtins["fit_and_proper"].id == uuid.UUID("e51a3a87-3475-5088-b38c-5182fc18dc2c")
    assert builtins["conflicts_of_interest"].id == uuid.UUID("923e519c-c94c-5add-857b-b253b9b9ef64")
    assert builtins["pi_cover"].id == uuid.UUID("eb527197-95bc-54d0-9bac-abc6700cadf1")
    for key, template in builtins.items():
        assert template.id == uuid.uuid5(BUILTIN_NAMESPACE, f"coverproof.builtin.{key}")
        assert template.id == builtin_id(key)
        assert template.version == 1
        assert builtin(template.id) is template
    assert builtins["fit_and_proper"].spec.audience == "person"
    assert builtins["conflicts_of_interest"].spec.audience == "person"
    assert builtins["pi_cover"].spec.audience == "counterparty"
    assert builtin(uuid.uuid4()) is None
    assert load_builtins() is load_builtins()


def test_pi_cover_asks_for_the_policy_dates_and_amounts() -> None:
    template = builtin(builtin_id("pi_cover"))
    assert template is not None
    questions = {q.id: q for q in template.spec.questions}
    assert questions["period_start"].kind == QuestionKind.date
    assert questions["period_end"].kind == QuestionKind.date
    assert questions["limit_of_indemnity"].kind == QuestionKind.money
    assert questions["limit_of_indemnity"].min_pence == 1
    assert questions["excess"].kind == QuestionKind.money
    assert questions["excess"].min_pence == 0
    assert questions["insurer"].kind == QuestionKind.short_text
    assert questions["policy_number"].kind == QuestionKind.short_text
    assert questions["covers_our_activities"].explain_if == "no"
    assert questions["claims_notified"].explain_if == "yes"
    assert all(q.required for q in template.spec.questions)


def test_fit_and_proper_keeps_personal_data_minimal() -> None:
    template = builtin(builtin_id("fit_and_proper"))
    assert template is not None
    ids = {q.id for q in template.spec.questions}
    assert "criminal_offences" in ids
    assert "certification_function" in ids
    assert not any("birth" in q.id or "birth" in q.label for q in template.spec.questions)


def test_snapshot_round_trips_and_is_json() -> None:
    template = builtin(builtin_id("conflicts_of_interest"))
    assert template is not None
    pinned = snapshot(template.spec, template_id=template.id, version=3, key=template.key)
    stored = json.loads(json.dumps(pinned))  # as it comes back from a jsonb column
    assert stored["template_id"] == str(template.id)
    assert (stored["key"], stored["version"]) == ("conflicts_of_interest", 3)
    assert stored["name"] == template.spec.name
    assert stored["attestation"] == template.spec.attestation
    assert stored["questions"][0]["id"] == "outside_interests"
    assert spec_from_snapshot(stored) == template.spec


def test_a_builtin_file_must_be_named_for_its_key(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    body = {"key": "pi_cover", "version": 1, **_spec({"id": "a", "label": "A", "kind": "yes_no"})}
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"other\.json: key must be 'other'"):
        _load_file(path)
    path.write_text(json.dumps({**body, "key": "other", "version": 0}))
    with pytest.raises(ValueError, match="version must be a whole number from 1"):
        _load_file(path)
    path.write_text(json.dumps({**body, "key": "other"}))
    assert _load_file(path).id == builtin_id("other")
