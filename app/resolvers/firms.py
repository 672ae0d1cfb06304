"""Resolvers for the caller's firm."""

from __future__ import annotations

from strawberry.types.unset import UNSET

from app.firms import service
from app.firms.schemas import FirmUpdate
from app.schema.context import Info
from app.schema.firms import Firm, FirmUpdateInput, FirmUpdatePayload


async def firm(info: Info) -> Firm:
    return Firm.from_model(await info.context.run(service.get_firm))


async def update_firm(info: Info, input: FirmUpdateInput) -> FirmUpdatePayload:
    update = FirmUpdate.model_validate(
        {key: value for key, value in vars(input).items() if value is not UNSET}
    )
    return FirmUpdatePayload(
        firm=Firm.from_model(await info.context.run(service.update_firm, update))
    )
