"""Resolvers for the firm's counterparties."""

from __future__ import annotations

import uuid

from strawberry.types.unset import UNSET

from app.counterparties import service
from app.counterparties.schemas import CounterpartyCreate, CounterpartyUpdate
from app.schema.context import Info
from app.schema.counterparties import (
    Counterparty,
    CounterpartyConnection,
    CounterpartyCreateInput,
    CounterpartyEdge,
    CounterpartyPayload,
    CounterpartyUpdateInput,
)
from app.schema.pagination import PageInfo


async def counterparties(
    info: Info,
    search: str | None = None,
    include_archived: bool = False,
    first: int = 20,
    after: str | None = None,
) -> CounterpartyConnection:
    rows, has_next_page = await info.context.run(
        service.list_counterparties,
        search=search,
        include_archived=include_archived,
        first=first,
        after=after,
    )
    edges = [
        CounterpartyEdge(cursor=service.encode_cursor(row), node=Counterparty.from_model(row))
        for row in rows
    ]
    end_cursor = edges[-1].cursor if edges else None
    return CounterpartyConnection(
        edges=edges, page_info=PageInfo(has_next_page=has_next_page, end_cursor=end_cursor)
    )


async def counterparty(info: Info, id: uuid.UUID) -> Counterparty:
    return Counterparty.from_model(await info.context.run(service.get_counterparty, id))


async def create_counterparty(info: Info, input: CounterpartyCreateInput) -> CounterpartyPayload:
    data = CounterpartyCreate.model_validate(vars(input))
    created = await info.context.run(service.create_counterparty, data)
    return CounterpartyPayload(counterparty=Counterparty.from_model(created))


async def update_counterparty(
    info: Info, id: uuid.UUID, input: CounterpartyUpdateInput
) -> CounterpartyPayload:
    update = CounterpartyUpdate.model_validate(
        {key: value for key, value in vars(input).items() if value is not UNSET}
    )
    updated = await info.context.run(service.update_counterparty, id, update)
    return CounterpartyPayload(counterparty=Counterparty.from_model(updated))


async def archive_counterparty(info: Info, id: uuid.UUID) -> CounterpartyPayload:
    archived = await info.context.run(service.archive_counterparty, id)
    return CounterpartyPayload(counterparty=Counterparty.from_model(archived))
