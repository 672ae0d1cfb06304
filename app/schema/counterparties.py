"""GraphQL types for counterparties and their derived cover status.

The root fields are in ``counterparties_root.py``: they import the resolvers, which import these
types, so keeping them apart avoids an import cycle (as ``firms.py`` and ``core.py`` do).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.dataloader import DataLoader

from app import calendar
from app.counterparties import cover, service
from app.counterparties.schemas import CounterpartyKind
from app.db.models import Counterparty as CounterpartyModel
from app.schema.context import Context, Info
from app.schema.pagination import PageInfo

# Registers the service layer's enum itself, so its values pass straight through resolvers.
strawberry.enum(CounterpartyKind, description="What the counterparty is to the firm.")

_COUNTERPARTY_LOADER = "counterparty"
_COVER_LOADER = "counterparty.cover_status"


@strawberry.enum(
    description="Professional indemnity cover today, from the policies confirmed: COVERED, "
    "EXPIRING (ending within the window with no renewal confirmed to follow on without a gap), "
    "LAPSED (ended, even with a renewal confirmed ahead), NOT_YET_IN_FORCE (a policy confirmed "
    "ahead of its start, and none in force before), UNKNOWN (none confirmed)."
)
class CoverState(Enum):
    COVERED = "covered"
    EXPIRING = "expiring"
    LAPSED = "lapsed"
    NOT_YET_IN_FORCE = "not_yet_in_force"
    UNKNOWN = "unknown"


@strawberry.type
class CoverStatus:
    state: CoverState
    until: date | None = strawberry.field(
        description="The last day of cover, through confirmed renewals that leave no gap (for "
        "LAPSED, the day it ended); null when unknown or not yet in force."
    )
    covers_all_activities: bool | None = strawberry.field(
        description="Whether the policy in force says it covers everything the counterparty "
        "does for the firm (false: its confirmation lists exclusions); null when none is in force "
        "or it does not say."
    )
    starts_on: date | None = strawberry.field(
        description="For NOT_YET_IN_FORCE, the day the confirmed cover starts; for EXPIRING or "
        "LAPSED, the day a renewal confirmed ahead starts after a gap (null when none is)."
    )

    @classmethod
    def from_status(cls, status: cover.CoverStatus) -> CoverStatus:
        return cls(
            state=CoverState(status.state.value),
            until=status.until,
            covers_all_activities=status.covers_all_activities,
            starts_on=status.starts_on,
        )


def today() -> date:
    """The day cover status is judged on, in London (tests replace this clock)."""
    return calendar.today()


def cover_status_loader(context: Context) -> DataLoader[uuid.UUID, cover.CoverStatus]:
    """The request's one cover-status loader: every counterparty on a page is looked up in a
    single ``cover_statuses`` call instead of one query each."""
    loader: DataLoader[uuid.UUID, cover.CoverStatus] | None = context.loaders.get(_COVER_LOADER)
    if loader is None:

        async def load(ids: list[uuid.UUID]) -> list[cover.CoverStatus]:
            window = context.settings.cover_expiry_window_days
            found = await context.run(service.cover_statuses, ids, today(), window)
            return [found[ident] for ident in ids]

        loader = context.loaders[_COVER_LOADER] = DataLoader(load_fn=load)
    return loader


def counterparty_loader(context: Context) -> DataLoader[uuid.UUID, CounterpartyModel | None]:
    """The request's one counterparty loader (for declarations that name a counterparty)."""
    loader: DataLoader[uuid.UUID, CounterpartyModel | None] | None = context.loaders.get(
        _COUNTERPARTY_LOADER
    )
    if loader is None:

        async def load(ids: list[uuid.UUID]) -> list[CounterpartyModel | None]:
            found = await context.run(service.counterparties_by_ids, ids)
            return [found.get(ident) for ident in ids]

        loader = context.loaders[_COUNTERPARTY_LOADER] = DataLoader(load_fn=load)
    return loader


async def _cover_status(root: Counterparty, info: Info) -> CoverStatus:
    return CoverStatus.from_status(await cover_status_loader(info.context).load(root.id))


@strawberry.type
class Counterparty:
    id: uuid.UUID
    name: str
    kind: CounterpartyKind
    frn: str | None = strawberry.field(description="FCA firm reference number (6-7 digits).")
    contact_name: str | None
    contact_email: str | None
    notes: str | None
    archived: bool
    created_at: datetime
    updated_at: datetime

    cover_status: CoverStatus = strawberry.field(
        resolver=_cover_status,
        description="Derived from the submitted PI cover confirmations.",
    )

    @classmethod
    def from_model(cls, counterparty: CounterpartyModel) -> Counterparty:
        return cls(
            id=counterparty.id,
            name=counterparty.name,
            kind=CounterpartyKind(counterparty.kind),
            frn=counterparty.frn,
            contact_name=counterparty.contact_name,
            contact_email=counterparty.contact_email,
            notes=counterparty.notes,
            archived=counterparty.archived_at is not None,
            created_at=counterparty.created_at,
            updated_at=counterparty.updated_at,
        )


@strawberry.type
class CounterpartyEdge:
    cursor: str
    node: Counterparty


@strawberry.type
class CounterpartyConnection:
    edges: list[CounterpartyEdge]
    page_info: PageInfo


@strawberry.input
class CounterpartyCreateInput:
    name: str
    kind: CounterpartyKind
    frn: str | None = strawberry.field(default=None, description="6-7 digits.")
    contact_name: str | None = None
    contact_email: str | None = None
    notes: str | None = None
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.input(description="Only the fields sent are changed; null clears an optional one.")
class CounterpartyUpdateInput:
    name: str | None = strawberry.UNSET
    kind: CounterpartyKind | None = strawberry.UNSET
    frn: str | None = strawberry.UNSET
    contact_name: str | None = strawberry.UNSET
    contact_email: str | None = strawberry.UNSET
    notes: str | None = strawberry.UNSET


@strawberry.type
class CounterpartyPayload:
    counterparty: Counterparty
