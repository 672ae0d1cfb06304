"""The compiled write lane: persisted ``createDeclaration`` without graphql-core or the ORM.

A held document whose one root field is ``createDeclaration(input: $variable)``, selecting plain
leaves of its ``declaration``, is answered on a plain asyncpg connection in one transaction:
the caller authenticated and its firm bound in one call, the input coerced by graphql-core's
own variable coercion, built as Strawberry builds it (``FlatInput``) and validated by the
resolver's own model, the mutation counted against the caller's limit, then
``app/declarations/lane.py`` writes the same row and the same chained audit entry as the
service, and the answer is built from the row as the executor builds it.

Anything else is handed to the normal path before anything is committed: an idempotency key,
invalid input, a refusal (the normal path gives it, with its own code), any failure. Only a
failed commit is not handed over, since its outcome is unknown and the normal path would write
a second draft: it is answered as the normal path answers a failed commit (500). A mutation the
lane counted and then handed over is not counted again (``Context.counted_mutation``); should
the normal path then refuse it before its gate (the session ended in between), that one count
stands.
``tests/declarations/test_fastwrite.py`` compares both paths' answers and rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import MISSING, dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from graphql import OperationDefinitionNode, VariableNode
from graphql.execution.values import get_variable_values
from pydantic import ValidationError
from strawberry.relay import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import convert_argument
from strawberry.types.base import StrawberryOptional, get_object_definition

from app.audit.witness import Told, Witness, chain_of, tell
from app.auth.actor import Actor
from app.declarations import lane
from app.errors import AppError
from app.resolvers.declarations import create_input
from app.schema.access import read_scope
from app.schema.declarations import DeclarationCreateInput
from app.schema.shapes import Fallback, fields, key, leaves, node_of

Binder = Callable[[asyncpg.Connection], Awaitable[Actor | None]]
"""Authenticates a lane request on its connection and binds its firm to the open transaction;
the caller as an Actor, or None when the normal path must answer (a refusal is the normal
path's to give)."""
Counter = Callable[[Actor], Awaitable[None]]
"""Counts the mutation against the caller's limit, as the normal path's gate does."""


class CommitFailed(Exception):
    """The commit did not report success: the draft may or may not exist."""


@dataclass(frozen=True)
class CreatePlan:
    root_key: str
    payload_key: str
    leaves: tuple[tuple[str, str], ...]  # (response key, field name), in document order
    variable: str  # the variable that holds the input
    operation: OperationDefinitionNode  # whose variable definitions coerce the request's values
    name: str | None = None  # the operation's name, which a request's operationName must match
    flat: FlatInput | None = None  # the input's conversion, when flat (``for_schema``)
    reads: frozenset[str] = frozenset()  # the read scopes its leaves need of a key (access)


@dataclass(frozen=True)
class FlatInput:
    """How ``convert_argument`` builds an input type whose every field is a scalar: each field's
    value as graphql-core coerced it (a scalar's is already its Python value), under its Python
    name, None for an absent field without a default. About 1 us a request, where
    ``convert_argument`` takes about 50: it resolves every field's type and name on every call."""

    type_: type
    absent: dict[str, None]  # the fields without defaults, each None until given
    names: tuple[tuple[str, str], ...]  # (GraphQL name, Python name)

    def convert(self, value: Mapping[str, Any] | None) -> Any:
        if value is None:
            return None
        kwargs: dict[str, Any] = dict(self.absent)
        for graphql_name, python_name in self.names:
            if graphql_name in value:
                kwargs[python_name] = value[graphql_name]
        return self.type_(**kwargs)


def flat_input(schema: Any, type_: type) -> FlatInput | None:
    """The flat form of ``type_`` in this schema, or None: a field that is not a scalar or an
    optional scalar (an enum, a list, an input, a ``Maybe``, a ``GlobalID``) is
    ``convert_argument``'s to convert."""
    definition = get_object_definition(type_, strict=True)
    if not definition.is_input or definition.from_input is not None:
        return None  # a type that builds itself (a pydantic input) is convert_argument's
    registry = schema.schema_converter.scalar_registry
    names: list[tuple[str, str]] = []
    absent: dict[str, None] = {}
    for field in definition.fields:
        resolved = field.resolve_type(type_definition=definition)
        if type(resolved) is StrawberryOptional:  # not Maybe, whose values are wrapped
            resolved = resolved.of_type
        if resolved is GlobalID or not is_scalar(resolved, registry):
            return None  # GlobalID is parsed from its text by convert_argument
        names.append((schema.config.name_converter.from_field(field), field.python_name))
        if field.default_value is MISSING and field.default_factory is MISSING:
            absent[field.python_name] = None
    return FlatInput(type_, absent, tuple(names))


def for_schema(plan: CreatePlan, schema: Any) -> CreatePlan:
    """The plan with how its input is converted in this schema."""
    return replace(plan, flat=flat_input(schema, DeclarationCreateInput))


def compile_create(operation: OperationDefinitionNode) -> CreatePlan:
    """The plan of a mutation the lane can answer; Fallback (or ValueError) otherwise."""
    (root,) = fields(operation.selection_set)
    (argument,) = root.arguments or ()
    if root.name.value != "createDeclaration" or argument.name.value != "input":
        raise Fallback
    if not isinstance(argument.value, VariableNode):
        raise Fallback
    (payload,) = fields(root.selection_set)
    if payload.name.value != "declaration" or payload.arguments:
        raise Fallback
    selected = leaves(payload)
    if len({k for k, _ in selected}) != len(selected):
        raise Fallback  # merged duplicate keys: leave the merging rules to graphql-core
    name = operation.name.value if operation.name else None
    reads = frozenset(s for _, leaf in selected if (s := read_scope("Declaration", leaf)))
    return CreatePlan(
        key(root),
        key(payload),
        tuple(selected),
        argument.value.name.value,
        operation,
        name,
        reads=reads,
    )


async def answer_create(
    plan: CreatePlan,
    schema: Any,
    pool: asyncpg.Pool,
    bind: Binder,
    count: Counter,
    seen: Witness,
    variables: dict[str, Any],
    operation_name: str | None,
    acquire_seconds: float,
) -> dict[str, Any]:
    """The lane's answer (the draft is committed, and ``seen`` told of its entry), or Fallback
    with nothing written."""
    if operation_name is not None and operation_name != plan.name:
        raise Fallback  # the executor's "unknown operation" error
    definitions = plan.operation.variable_definitions or ()
    coerced = get_variable_values(schema._schema, definitions, variables)
    if isinstance(coerced, list):
        raise Fallback  # the executor reports the variables' errors
    try:
        # As Strawberry converts a resolver's argument, then as the resolver validates it.
        given = coerced.coerced[plan.variable]
        if plan.flat is not None:
            value = plan.flat.convert(given)
        else:
            registry, config = schema.schema_converter.scalar_registry, schema.config
            value = convert_argument(given, DeclarationCreateInput, registry, config)
        data = create_input(cast(DeclarationCreateInput, value))
    except ValidationError as error:
        raise Fallback from error
    if data.idempotency_key is not None:
        raise Fallback
    committing = False
    try:
        async with pool.acquire(timeout=acquire_seconds) as conn, conn.transaction():
            actor = await bind(conn)
            if actor is None:
                raise Fallback
            try:
                await count(actor)
                row, entry = await lane.create_declaration(conn, actor, data)
            except AppError as error:
                raise Fallback from error  # rolled back; the normal path refuses it itself
            # Built before the commit: nothing after it may hand the request over.
            answer = {plan.payload_key: node_of(plan.leaves, row, datetime.now(UTC))}
            committing = True
    except Exception as error:
        if committing:
            raise CommitFailed from error
        raise
    told = Told(entry["seq"], entry["prev_hash"], entry["seq"], entry["hash"])
    await tell(seen, {chain_of(actor.firm_id): told})
    return {plan.root_key: answer}
