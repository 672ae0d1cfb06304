"""Seed a benchmark database: 100 firms x 2,000 declarations, a session per firm, fresh
recipient links, and a 100,000-entry audit chain. Runs as the bench server's superuser."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.audit import canonical
from app.db.models import Declaration
from app.declarations import links
from app.declarations.public import stored_response_hash
from app.declarations.templates import load_builtins
from app.declarations.templates import snapshot as template_snapshot

FIRMS = 100
PER_FIRM = 2_000
TOKENS = 6_000
CHAIN = 100_000
FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")

FORM_KEY = "select declaration_form_key($1::jsonb)"
# The columns every bulk copy of declarations fills (the sent and submitted ones fill more).
DECLARATION_COLUMNS = [
    "id",
    "firm_id",
    "template_id",
    "template_version",
    "form_key",
    "recipient_name",
    "recipient_email",
    "status",
    "created_at",
    "reminder_count",
]


@dataclass(frozen=True)
class Seeded:
    firms: list[str]
    users: list[str]
    cookies: list[str]
    tokens: list[str]
    chain_firm: str


def valid_answers() -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for q in FIT.spec.questions:
        if q.kind == "yes_no":
            answers[q.id] = q.explain_if != "yes"
            if q.explain_if == ("yes" if answers[q.id] else "no"):
                answers[f"{q.id}_explanation"] = "Explained."
        elif q.kind == "choice":
            answers[q.id] = q.choices[0] if q.choices else ""
        elif q.kind == "date":
            answers[q.id] = "2026-01-31"
        elif q.kind == "money":
            answers[q.id] = 100_000
        else:
            answers[q.id] = "A careful answer"
    return answers


async def seed(superuser_url: str, secret_key: str) -> Seeded:
    conn = await asyncpg.connect(superuser_url)
    try:
        return await _seed(conn, secret_key)
    finally:
        await conn.close()


async def _seed(conn: asyncpg.Connection, secret_key: str) -> Seeded:
    now = datetime.now(UTC)
    firms = [str(uuid.uuid4()) for _ in range(FIRMS)]
    users = [str(uuid.uuid4()) for _ in range(FIRMS)]
    cookies = [secrets.token_urlsafe(32) for _ in range(FIRMS)]
    await conn.copy_records_to_table(
        "firms",
        records=[(uuid.UUID(f), f"Bench Firm {n}", "123456", now) for n, f in enumerate(firms)],
        columns=["id", "name", "frn", "created_at"],
    )
    await conn.copy_records_to_table(
        "users",
        records=[(uuid.UUID(u), f"bench{n}@example.test", now, now) for n, u in enumerate(users)],
        columns=["id", "email", "email_verified_at", "created_at"],
    )
    await conn.copy_records_to_table(
        "memberships",
        records=[
            (uuid.UUID(f), uuid.UUID(u), "owner", now) for f, u in zip(firms, users, strict=True)
        ],
        columns=["firm_id", "user_id", "role", "created_at"],
    )
    await conn.copy_records_to_table(
        "sessions",
        records=[
            (
                uuid.uuid4(),
                hashlib.sha256(c.encode()).digest(),
                uuid.UUID(u),
                uuid.UUID(f),
                now,
                now,
                now + timedelta(days=2),
            )
            for c, u, f in zip(cookies, users, firms, strict=True)
        ],
        columns=[
            "id",
            "token_hash",
            "user_id",
            "firm_id",
            "created_at",
            "last_seen_at",
            "expires_at",
        ],
    )
    snapshot = json.dumps(
        template_snapshot(FIT.spec, template_id=FIT.id, version=FIT.version, key=FIT.key)
    )
    await conn.copy_records_to_table(
        "declaration_forms",
        records=[(uuid.UUID(f), snapshot) for f in firms],
        columns=["firm_id", "snapshot"],
    )
    form = await conn.fetchval(FORM_KEY, snapshot)  # the database's key (0036)
    statuses = ["draft", "sent", "opened", "submitted", "revoked"]
    records = []
    for f in firms:
        for n in range(PER_FIRM):
            records.append(
                (
                    uuid.uuid4(),
                    uuid.UUID(f),
                    FIT.id,
                    FIT.version,
                    form,
                    f"Person {n}",
                    f"person{n}@example.test",
                    statuses[n % 5],
                    now - timedelta(seconds=n),
                    0,
                )
            )
    await conn.copy_records_to_table(
        "declarations",
        records=records,
        columns=DECLARATION_COLUMNS,
    )
    tokens, token_rows = [], []
    expires = now + timedelta(days=7)
    for n in range(TOKENS):
        token, token_hash = links.new_token(secret_key)
        tokens.append(token)
        token_rows.append(
            (
                uuid.uuid4(),
                uuid.UUID(firms[n % FIRMS]),
                FIT.id,
                FIT.version,
                form,
                "Recipient",
                "recipient@example.test",
                "sent",
                now,
                0,
                token_hash,
                expires,
                now,
            )
        )
    await conn.copy_records_to_table(
        "declarations",
        records=token_rows,
        columns=[
            *DECLARATION_COLUMNS,
            "token_hash",
            "token_expires_at",
            "sent_at",
        ],
    )
    await _seed_pack_firm(conn, firms[3], snapshot, form, now)
    chain_firm = firms[0]
    await _seed_chain(conn, uuid.UUID(chain_firm), uuid.UUID(users[0]))
    await conn.execute("analyze")
    return Seeded(firms, users, cookies, tokens, chain_firm)


PACK_DECLARATIONS = 500


async def _seed_pack_firm(
    conn: asyncpg.Connection, firm: str, snapshot: str, form: bytes, now: datetime
) -> None:
    """500 submitted declarations for the evidence-pack benchmark, each with the
    ``declaration.submitted`` audit entry a submission writes."""
    answers = valid_answers()
    records, entries = [], []
    for n in range(PACK_DECLARATIONS):
        declaration_id, at, name = uuid.uuid4(), now - timedelta(minutes=n), f"Submitter {n}"
        # The SHA-256 the recipient would have been given: a pack checks every response's.
        receipt = stored_response_hash(
            Declaration(
                id=declaration_id,
                firm_id=uuid.UUID(firm),
                template_id=FIT.id,
                template_version=FIT.version,
                template_snapshot=json.loads(snapshot),  # the receipt covers the form too
                answers=answers,
                attestation_accepted=True,
                signature_name=name,
                submitted_at=at,
            )
        )
        records.append(
            (
                declaration_id,
                uuid.UUID(firm),
                FIT.id,
                FIT.version,
                form,
                name,
                f"submitter{n}@example.test",
                "submitted",
                at,
                0,
                json.dumps(answers),
                True,
                name,
                "127.0.0.1",
                at,
                receipt,
            )
        )
        entries.append(
            {
                "occurred_at": at,
                "actor_type": "recipient",
                "actor_id": str(declaration_id),
                "action": "declaration.submitted",
                "target_type": "declaration",
                "target_id": str(declaration_id),
                "details": {"response_sha256": receipt.hex(), "template_version": FIT.version},
                "ip": "127.0.0.1",
            }
        )
    await conn.copy_records_to_table(
        "declarations",
        records=records,
        columns=[
            *DECLARATION_COLUMNS,
            "answers",
            "attestation_accepted",
            "signature_name",
            "submitted_ip",
            "submitted_at",
            "response_sha256",
        ],
    )
    await _copy_chain(conn, uuid.UUID(firm), entries[::-1])  # oldest first, as they happened


async def _seed_chain(conn: asyncpg.Connection, firm_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """A long chain for the verification benchmark."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = []
    for seq in range(1, CHAIN + 1):
        # Fractions of a second, as real entries have (a whole second formats differently).
        at = start + timedelta(seconds=seq, microseconds=seq * 7919 % 1_000_000)
        entries.append(
            {
                "occurred_at": at,
                "actor_type": "user",
                "actor_id": str(user_id),
                "action": "firm.updated",
                "target_type": "firm",
                "target_id": str(firm_id),
                "details": {"changes": {"name": {"from": f"N{seq - 1}", "to": f"N{seq}"}}},
                "ip": "127.0.0.1",
            }
        )
    await _copy_chain(conn, firm_id, entries)


async def _copy_chain(
    conn: asyncpg.Connection, firm_id: uuid.UUID, entries: list[dict[str, Any]]
) -> None:
    """A firm's chain of ``entries`` (its first), built exactly as chain.record builds it (the
    per-row append trigger is paused while loading; verification rechecks every link)."""
    prev, rows = canonical.GENESIS, []
    for seq, entry in enumerate(entries, start=1):
        fields = {"seq": seq, **entry}
        body = canonical.encode(canonical.entry_body(firm_id=str(firm_id), **fields))
        digest = canonical.chain_hash(prev, body)
        rows.append(
            (
                uuid.uuid4(),
                firm_id,
                seq,
                fields["occurred_at"],
                fields["actor_type"],
                fields["actor_id"],
                fields["action"],
                fields["target_type"],
                fields["target_id"],
                json.dumps(fields["details"]),
                fields["ip"],
                prev,
                digest,
                body,
            )
        )
        prev = digest
    await conn.execute("alter table audit_log disable trigger audit_log_append")
    try:
        await conn.copy_records_to_table(
            "audit_log",
            records=rows,
            columns=[
                "id",
                "firm_id",
                "seq",
                "occurred_at",
                "actor_type",
                "actor_id",
                "action",
                "target_type",
                "target_id",
                "details",
                "ip",
                "prev_hash",
                "hash",
                "canonical",
            ],
        )
    finally:
        await conn.execute("alter table audit_log enable trigger audit_log_append")
