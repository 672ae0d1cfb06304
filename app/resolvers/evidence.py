"""Resolvers for evidence packs: read the context, call one service, map to schema types."""

from __future__ import annotations

import uuid

from app.evidence import service
from app.evidence.schemas import PackCreate
from app.schema.context import Info
from app.schema.evidence import (
    EvidencePack,
    EvidencePackConnection,
    EvidencePackEdge,
    EvidencePackGenerateInput,
    EvidencePackPayload,
    evidence_env,
)
from app.schema.pagination import PageInfo


async def evidence_packs(
    info: Info, first: int = 20, after: str | None = None
) -> EvidencePackConnection:
    rows, more = await info.context.run(service.list_packs, first, after)
    edges = [
        EvidencePackEdge(cursor=service.encode_cursor(p), node=EvidencePack.of(p)) for p in rows
    ]
    end = edges[-1].cursor if edges else None
    return EvidencePackConnection(
        edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end)
    )


async def evidence_pack(info: Info, id: uuid.UUID) -> EvidencePack:
    return EvidencePack.of(await info.context.run(service.get_pack, id))


async def generate_evidence_pack(
    info: Info, input: EvidencePackGenerateInput
) -> EvidencePackPayload:
    data = PackCreate.model_validate(
        {
            "title": input.title,
            "from": input.start,
            "to": input.end,
            "declaration_ids": input.declaration_ids,
            "counterparty_ids": input.counterparty_ids,
            "idempotency_key": input.idempotency_key,
        }
    )
    pack = await info.context.run(service.generate_pack, evidence_env(info), data)
    return EvidencePackPayload(pack=EvidencePack.of(pack))


async def retry_evidence_pack(info: Info, id: uuid.UUID) -> EvidencePackPayload:
    pack = await info.context.run(service.retry_pack, evidence_env(info), id)
    return EvidencePackPayload(pack=EvidencePack.of(pack))
