"""Root fields for the audit trail (admins and owners)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from app.resolvers import audit as r
from app.schema.access import scoped
from app.schema.audit import (
    AuditCheckpoint,
    AuditCheckpointPayload,
    AuditEntryConnection,
    AuditExport,
    AuditVerification,
)
from app.schema.context import Info


async def _export(
    info: Info,
    from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
    to: datetime | None = None,
) -> AuditExport:
    return await r.export_audit_log(info, from_, to)


@strawberry.type
class AuditQuery:
    audit_entries: AuditEntryConnection = strawberry.field(
        metadata=scoped("audit:read"),
        resolver=r.audit_entries,
        description="Newest first; `first` is at most 100 (admins).",
    )
    verify_audit_chain: AuditVerification = strawberry.field(
        metadata=scoped("audit:read"),
        resolver=r.verify_audit_chain,
        description="Recompute the firm's chain and check every signed checkpoint (admins).",
    )
    audit_checkpoints: list[AuditCheckpoint] = strawberry.field(
        metadata=scoped("audit:read"),
        resolver=r.audit_checkpoints,
        description="The firm's signed checkpoints, newest first (admins): every key's at each "
        "of the `first` (at most 500) newest signed seqs below `beforeSeq`; for the next page, "
        "pass the last seq listed.",
    )
    export_audit_log: AuditExport = strawberry.field(
        metadata=scoped("audit:read"),
        resolver=_export,
        description="The firm's entries as signed JSON Lines (admins).",
    )


@strawberry.type
class AuditMutation:
    create_audit_checkpoint: AuditCheckpointPayload = strawberry.mutation(
        resolver=r.create_audit_checkpoint, description="Sign the chain head now (admins)."
    )
