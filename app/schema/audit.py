"""GraphQL types for the audit trail."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection
from datetime import datetime
from enum import Enum
from typing import cast

import strawberry
from strawberry.scalars import JSON

from app.audit.chain import Verification
from app.db.models import AuditCheckpoint as CheckpointModel
from app.db.models import AuditEntry as EntryModel
from app.schema.pagination import PageInfo


@strawberry.enum
class AuditActorType(Enum):
    USER = "user"
    API_KEY = "api_key"
    RECIPIENT = "recipient"
    SYSTEM = "system"


@strawberry.type
class AuditActor:
    type: AuditActorType
    id: str | None
    display_name: str


@strawberry.type
class AuditEntry:
    seq: int
    occurred_at: datetime
    actor: AuditActor
    action: str = strawberry.field(
        description="A dotted name from the vocabulary in docs/audit.md."
    )
    target_type: str | None
    target_id: str | None
    details: JSON
    ip: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, entry: EntryModel, names: dict[tuple[str, str], str]) -> AuditEntry:
        kind = AuditActorType(entry.actor_type)
        fallback = "CoverProof" if kind is AuditActorType.SYSTEM else (entry.actor_id or "")
        return cls(
            seq=entry.seq,
            occurred_at=entry.occurred_at,
            actor=AuditActor(
                type=kind,
                id=entry.actor_id,
                display_name=names.get((entry.actor_type, entry.actor_id or ""), fallback),
            ),
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            details=cast(JSON, entry.details),
            ip=entry.ip,
            prev_hash=entry.prev_hash.hex(),
            hash=entry.hash.hex(),
        )


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo


@strawberry.input
class AuditEntryFilterInput:
    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


@strawberry.type
class AuditFailure:
    seq: int
    reason: str
    checkpoint_id: uuid.UUID | None


@strawberry.type(description="A checkpoint naming a revoked key that disagrees with the chain.")
class RevokedConflict:
    checkpoint_id: uuid.UUID
    seq: int
    key_id: str
    signed_by_key: bool | None = strawberry.field(
        description=(
            "Whether the revoked key made its signature: true, the key was used to sign another "
            "history; false, someone wrote the row; null, the key's public half is not "
            "configured (list it as retired to check)."
        )
    )


@strawberry.type
class AuditVerification:
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str
    checkpoints_checked: int
    failure: AuditFailure | None
    revoked_conflicts: list[uuid.UUID] = strawberry.field(
        description=(
            "Checkpoints naming a revoked key that disagree with the chain (another hash at "
            "their seq, or a seq beyond its head). They vouch for nothing and do not fail the "
            "verification, but may show that whoever holds the key used it: investigate them."
        )
    )
    revoked_conflict_details: list[RevokedConflict] = strawberry.field(
        description="The same checkpoints, each with its seq, key and what its signature says."
    )

    @classmethod
    def of(cls, result: Verification) -> AuditVerification:
        failure = None
        if result.failure_seq is not None:
            failure = AuditFailure(
                seq=result.failure_seq,
                reason=result.failure_reason or "",
                checkpoint_id=result.failure_checkpoint,
            )
        return cls(
            ok=result.ok,
            entries_checked=result.entries_checked,
            head_seq=result.head_seq,
            head_hash=result.head_hash.hex(),
            checkpoints_checked=result.checkpoints_checked,
            failure=failure,
            revoked_conflicts=[c.checkpoint_id for c in result.revoked_conflicts],
            revoked_conflict_details=[
                RevokedConflict(
                    checkpoint_id=c.checkpoint_id,
                    seq=c.seq,
                    key_id=c.key_id,
                    signed_by_key=c.signed,
                )
                for c in result.revoked_conflicts
            ],
        )


@strawberry.type
class AuditCheckpoint:
    id: uuid.UUID
    seq: int
    head_hash: str
    signed_at: datetime
    key_id: str
    signature: str = strawberry.field(description="Base64 Ed25519 signature (docs/audit.md).")
    key_revoked: bool = strawberry.field(
        description="Signed by a key since revoked: this checkpoint vouches for nothing."
    )

    @classmethod
    def of(cls, cp: CheckpointModel, revoked: Collection[str]) -> AuditCheckpoint:
        return cls(
            id=cp.id,
            seq=cp.seq,
            head_hash=cp.head_hash.hex(),
            signed_at=cp.signed_at,
            key_id=cp.key_id,
            signature=base64.b64encode(cp.signature).decode(),
            key_revoked=cp.key_id in revoked,
        )


@strawberry.type
class AuditExport:
    key_id: str
    jsonl: str = strawberry.field(description="JSON Lines; verify with tools/verify_audit.py.")


@strawberry.type
class AuditCheckpointPayload:
    checkpoint: AuditCheckpoint
