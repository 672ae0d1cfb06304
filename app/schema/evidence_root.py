"""Root fields of the evidence-pack domain (types in ``evidence.py``).

A partner's API key with the ``evidence:read`` scope may read packs (and, from object
storage, download them); only signed-in members generate or retry them.
"""

from __future__ import annotations

import strawberry

from app.resolvers import evidence as r
from app.schema.access import scoped
from app.schema.evidence import EvidencePack, EvidencePackConnection, EvidencePackPayload


@strawberry.type
class EvidenceQuery:
    evidence_packs: EvidencePackConnection = strawberry.field(
        metadata=scoped("evidence:read"),
        resolver=r.evidence_packs,
        description="Newest first; `first` is at most 100.",
    )
    evidence_pack: EvidencePack = strawberry.field(
        metadata=scoped("evidence:read"), resolver=r.evidence_pack
    )


@strawberry.type
class EvidenceMutation:
    generate_evidence_pack: EvidencePackPayload = strawberry.mutation(
        resolver=r.generate_evidence_pack,
        description="Render and store a PDF pack now (members and up); returns it ready, or "
        "failed with a reason (nothing is left in storage; a failed render or store can be "
        "retried, a response that no longer matches its hash cannot). RATE_LIMITED while "
        "too many packs are being made.",
    )
    retry_evidence_pack: EvidencePackPayload = strawberry.mutation(
        resolver=r.retry_evidence_pack,
        description="Make a failed pack again from the same scope (members and up).",
    )
