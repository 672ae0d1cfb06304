"""Root fields of the counterparties domain (types in ``counterparties.py``)."""

from __future__ import annotations

import strawberry

from app.resolvers import counterparties as resolvers
from app.schema.access import scoped
from app.schema.counterparties import Counterparty, CounterpartyConnection, CounterpartyPayload


@strawberry.type
class CounterpartyQuery:
    counterparties: CounterpartyConnection = strawberry.field(
        metadata=scoped("counterparties:read"),
        resolver=resolvers.counterparties,
        description="The firm's counterparties by name; search matches name, FRN or email.",
    )
    counterparty: Counterparty = strawberry.field(
        metadata=scoped("counterparties:read"),
        resolver=resolvers.counterparty,
        description="One of the firm's counterparties.",
    )


@strawberry.type
class CounterpartyMutation:
    create_counterparty: CounterpartyPayload = strawberry.mutation(
        metadata=scoped("counterparties:write"),
        resolver=resolvers.create_counterparty,
        description="Add a counterparty (admins).",
    )
    update_counterparty: CounterpartyPayload = strawberry.mutation(
        metadata=scoped("counterparties:write"),
        resolver=resolvers.update_counterparty,
        description="Change a counterparty's details (admins).",
    )
    archive_counterparty: CounterpartyPayload = strawberry.mutation(
        metadata=scoped("counterparties:write"),
        resolver=resolvers.archive_counterparty,
        description="Hide a counterparty from the default list (admins).",
    )
