"""What a pack shows, as plain values: collected in the request (with the database), rendered
in a worker thread (without it). Nothing here refers to the ORM or a session, so the render
cannot touch the database from another thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.declarations.templates import QuestionKind, TemplateSpec, explanation_key

NOT_ANSWERED = "Not answered"


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    explanation: str | None = None


@dataclass(frozen=True)
class DeclarationContent:
    id: str
    recipient_name: str
    recipient_email: str
    template_name: str
    template_version: int
    status: str
    counterparty: str | None
    created_at: str
    sent_at: str | None
    submitted_at: str | None
    answers: list[Answer]
    attestation: str | None
    attestation_accepted: bool | None
    signature_name: str | None
    submitted_ip: str | None
    response_sha256: str | None
    # False for a receipt given before receipts covered the form (docs/audit.md).
    receipt_covers_form: bool = True


@dataclass(frozen=True)
class CounterpartyContent:
    name: str
    kind: str
    frn: str | None
    cover: str
    cover_until: str | None


@dataclass(frozen=True)
class EntryContent:
    seq: int
    occurred_at: str
    action: str
    actor: str
    target: str
    hash: str


@dataclass(frozen=True)
class CheckpointContent:
    seq: int
    head_hash: str
    signed_at: str
    key_id: str
    signature: str


@dataclass(frozen=True)
class VerificationContent:
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str
    checkpoints_checked: int
    failure: str | None


@dataclass(frozen=True)
class PackContent:
    pack_id: str
    title: str
    firm_name: str
    firm_frn: str | None
    period_from: date
    period_to: date
    declaration_filter: int | None
    counterparty_filter: int | None
    generated_by: str
    generated_at: str
    signing_key_id: str
    declarations: list[DeclarationContent] = field(default_factory=list)
    counterparties: list[CounterpartyContent] = field(default_factory=list)
    entries: list[EntryContent] = field(default_factory=list)
    verification: VerificationContent | None = None
    checkpoint: CheckpointContent | None = None


def printed_size(d: DeclarationContent) -> int:
    """The UTF-8 bytes of a declaration's answers, their questions and its attestation: what its
    pages print, at the least (escaped, and in markup, they take more). Collect counts it as it
    reads declarations, to stop before a pack's content passes what it may render."""
    texts = [d.attestation or ""]
    for a in d.answers:
        texts += [a.question, a.answer, a.explanation or ""]
    return sum(len(text.encode()) for text in texts)


def moment(value: datetime | None) -> str | None:
    """A timestamp as a person reads it, always in UTC and to the second."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(pence: int) -> str:
    """Whole pence as pounds: 123456 -> £1,234.56."""
    sign, pence = ("-", -pence) if pence < 0 else ("", pence)
    return f"{sign}£{pence // 100:,}.{pence % 100:02d}"


def _value(kind: QuestionKind | None, value: Any) -> str:
    if value is None or value == "":
        return NOT_ANSWERED
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if kind is QuestionKind.money and isinstance(value, int):
        return money(value)
    # Dates are shown as written (validated ISO text); text and choices as given.
    return str(value)


def answers_of(spec: TemplateSpec | None, answers: dict[str, Any] | None) -> list[Answer]:
    """Each question of the pinned version with its answer (and explanation, if any), then any
    stored answer the version does not name, so nothing recorded is ever left out."""
    given = dict(answers or {})
    lines: list[Answer] = []
    for question in spec.questions if spec else ():
        explanation = None
        if question.explain_if is not None:
            raw = given.pop(explanation_key(question.id), None)
            explanation = None if raw in (None, "") else str(raw)
        lines.append(
            Answer(question.label, _value(question.kind, given.pop(question.id, None)), explanation)
        )
    lines.extend(Answer(key, _value(None, value)) for key, value in sorted(given.items()))
    return lines
