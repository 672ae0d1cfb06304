"""Resolvers for browsing, verifying, exporting and checkpointing the firm's audit trail."""

from __future__ import annotations

import re
from datetime import datetime

from app import pagination
from app.audit import checkpoints, service
from app.auth.actor import Role
from app.errors import BadUserInput, MethodNotAllowed
from app.ratelimit.policies import Policy
from app.schema.audit import (
    AuditCheckpoint,
    AuditCheckpointPayload,
    AuditEntry,
    AuditEntryConnection,
    AuditEntryEdge,
    AuditEntryFilterInput,
    AuditExport,
    AuditVerification,
)
from app.schema.context import Info
from app.schema.enums import Long
from app.schema.pagination import PageInfo

_SEQ = re.compile(r"[0-9]{1,18}")


def _before(after: str | None) -> int | None:
    if after is None:
        return None
    # ASCII digits that fit a bigint: str.isdigit() takes "²", and 19 digits may not fit.
    if not _SEQ.fullmatch(after):
        raise pagination.not_a_cursor()
    return int(after)


async def audit_entries(
    info: Info,
    filter: AuditEntryFilterInput | None = None,
    first: int = 50,
    after: str | None = None,
) -> AuditEntryConnection:
    f = filter or AuditEntryFilterInput()
    filters = service.EntryFilter(f.action, f.actor_id, f.target_type, f.target_id, f.from_, f.to)
    rows, more = await info.context.run(service.list_entries, filters, first, _before(after))
    names = await info.context.run(service.actor_names, rows)
    edges = [AuditEntryEdge(cursor=str(e.seq), node=AuditEntry.of(e, names)) for e in rows]
    end = edges[-1].cursor if edges else None
    return AuditEntryConnection(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))


async def _count_whole_chain_read(info: Info) -> None:
    """Each verification or export reads every entry of the chain (and an export adds one):
    once of each in a request, as run, not as written (aliased, one request built thirty
    exports), and counted per caller."""
    context, name = info.context, info.field_name
    actor = context.actor
    actor.require(Role.ADMIN)  # refused as such, not counted
    if name in context.whole_chain_reads:
        raise BadUserInput(f"Ask for {name} once in a request.")
    context.whole_chain_reads.add(name)
    await context.limiter.hit(Policy.WHOLE_CHAIN_READS_PER_CALLER, f"{actor.type.value}:{actor.id}")


async def verify_audit_chain(info: Info) -> AuditVerification:
    await _count_whole_chain_read(info)
    return AuditVerification.of(
        await info.context.run(service.verify_chain, info.context.signing_key)
    )


async def audit_checkpoints(
    info: Info, first: int = 100, before_seq: Long | None = None
) -> list[AuditCheckpoint]:
    revoked = info.context.signing_key.revoked
    found = await info.context.run(checkpoints.list_checkpoints, first, before_seq)
    return [AuditCheckpoint.of(cp, revoked) for cp in found]


async def create_audit_checkpoint(info: Info) -> AuditCheckpointPayload:
    made = await info.context.run(checkpoints.create_checkpoint, info.context.signing_key)
    return AuditCheckpointPayload(checkpoint=AuditCheckpoint.of(made, ()))


async def export_audit_log(
    info: Info, from_: datetime | None = None, to: datetime | None = None
) -> AuditExport:
    if info.context.method != "POST":
        # Taking an export is recorded, and a GET must change nothing.
        raise MethodNotAllowed("Export with POST: taking an export is recorded.")
    await _count_whole_chain_read(info)
    key = info.context.signing_key
    text = await info.context.run(service.export_log, key, from_, to)
    return AuditExport(key_id=key.key_id, jsonl=text)
