"""The compiled fast path for persisted list queries (``../shared/design/PERFORMANCE.md``).

graphql-core spends about 4 us on every resolved field; a page of 50 declarations with five
fields is ~250 of them. For a *persisted* document whose only root field is ``declarations``
and whose selections are plain leaves of a node (plus cursor and pageInfo), the endpoint builds
the same response directly: after the request checks and the context (authentication, tenant
transaction), with the document validated once when its plan is compiled, it fetches the rows
through the same service and tenant transaction and serialises each leaf exactly as
Strawberry's scalars do. (Run as a Strawberry extension it measured ~2x slower: the extension
machinery, parser and validation caches cost more than the answer itself.)

It is a different way of building the response, never of reaching data: the tenant comes only
from the authenticated context; the same page limits apply. Anything unusual falls back to the
normal executor (fragments, directives, arguments other than ``first``/``after``, unexpected
variables, an unauthenticated caller, a NULL in a non-null field, any exception), so error
answers are the normal path's. ``tests/declarations/test_fastpath.py`` proves byte equality.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from graphql import (
    FieldNode,
    IntValueNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    VariableNode,
    parse,
    specified_rules,
    validate,
)
from limits.errors import StorageError
from strawberry.types import ExecutionResult

from app import pagination
from app.audit.witness import Witness
from app.declarations import service
from app.errors import AppError, RateLimited
from app.partners.keys import ApiKeyIdentity, Scope
from app.schema.fastwrite import (
    Binder,
    CommitFailed,
    Counter,
    CreatePlan,
    answer_create,
    compile_create,
    for_schema,
)
from app.schema.limits import ALIAS_LIMIT, DepthLimit, ListsOnce, SelectionLimits
from app.schema.shapes import LEAVES, Fallback, fields, key, leaves, node_of

log = logging.getLogger("coverproof.fastpath")
# The normal path's rules (graphql's own, plus the app's limits), but CredentialsAlone: a
# fast plan is one declarations or createDeclaration field, never a credential mutation.
RULES = (*specified_rules, DepthLimit, SelectionLimits, ListsOnce, ALIAS_LIMIT)

# A saturated lane hands the request to the normal path rather than queue for long.
ACQUIRE_SECONDS = 2.0


@dataclass(frozen=True)
class Plan:
    root_key: str
    first: Any  # an int literal, a VariableNode, or None (the default, 20)
    after: Any  # a str literal, None, or a VariableNode
    edges_key: str | None
    node_key: str | None
    cursor_key: str | None
    leaves: tuple[tuple[str, str], ...]  # (response key, field name), in document order
    edge_order: tuple[str, ...]
    page_info: tuple[tuple[str, str], ...] | None
    page_info_key: str | None
    order: tuple[str, ...]
    # Variables graphql-core must settle when absent (a declared default, or non-null: an error).
    settled_by_executor: frozenset[str] = frozenset()
    name: str | None = None  # the operation's name, which a request's operationName must match

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(LEAVES[name][0] for _, name in self.leaves if name in LEAVES)


def _argument(node: FieldNode, name: str) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == name:
            value = argument.value
            if isinstance(value, VariableNode | NullValueNode):
                return value if isinstance(value, VariableNode) else None
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, StringValueNode):
                return value.value
            raise Fallback
    return None


@dataclass
class _Shape:
    edges_key: str | None = None
    node_key: str | None = None
    cursor_key: str | None = None
    page_info_key: str | None = None
    leaves: list[tuple[str, str]] = field(default_factory=list)
    edge_order: list[str] = field(default_factory=list)
    page_info: list[tuple[str, str]] | None = None
    order: list[str] = field(default_factory=list)


def _edges(edges: FieldNode, shape: _Shape) -> None:
    shape.edges_key = key(edges)
    for part in fields(edges.selection_set):
        shape.edge_order.append(key(part))
        if part.name.value == "cursor" and not part.selection_set and shape.cursor_key is None:
            shape.cursor_key = key(part)  # one only: a second (aliased) is the executor's
        elif part.name.value == "node" and shape.node_key is None:
            shape.node_key = key(part)
            shape.leaves.extend(leaves(part))
        else:
            raise Fallback


def _page_info(part: FieldNode, shape: _Shape) -> None:
    shape.page_info_key, shape.page_info = key(part), []
    for info in fields(part.selection_set):
        if info.name.value not in ("hasNextPage", "endCursor") or info.arguments:
            raise Fallback
        shape.page_info.append((key(info), info.name.value))


def _operation(query: str) -> OperationDefinitionNode:
    document = parse(query)
    if len(document.definitions) != 1:
        raise Fallback
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode) or operation.directives:
        raise Fallback
    return operation


def _root(operation: OperationDefinitionNode) -> tuple[FieldNode, frozenset[str], str | None]:
    (root,) = fields(operation.selection_set)
    if root.name.value != "declarations":
        raise Fallback
    if {a.name.value for a in root.arguments or ()} - {"first", "after"}:
        raise Fallback
    settled = frozenset(
        d.variable.name.value
        for d in operation.variable_definitions or ()
        if d.default_value is not None or isinstance(d.type, NonNullTypeNode)
    )
    return root, settled, operation.name.value if operation.name else None


def compile_plan(query: str) -> Plan | CreatePlan | None:
    """A plan for a document a fast path can answer (a page, or a create), or None."""
    try:
        operation = _operation(query)
        if operation.operation is OperationType.MUTATION:
            return compile_create(operation)
        if operation.operation is not OperationType.QUERY:
            raise Fallback
        (root, settled, name), shape = _root(operation), _Shape()
        for part in fields(root.selection_set):
            shape.order.append(key(part))
            if part.name.value == "edges" and shape.edges_key is None:
                _edges(part, shape)
            elif part.name.value == "pageInfo" and shape.page_info is None:
                _page_info(part, shape)
            else:
                raise Fallback
        keys = (shape.order, shape.edge_order, [k for k, _ in shape.leaves])
        if any(len(set(k)) != len(k) for k in keys):
            raise Fallback  # merged duplicate keys: leave the merging rules to graphql-core
        return Plan(
            key(root),
            _argument(root, "first"),
            _argument(root, "after"),
            shape.edges_key,
            shape.node_key,
            shape.cursor_key,
            tuple(shape.leaves),
            tuple(shape.edge_order),
            tuple(shape.page_info) if shape.page_info is not None else None,
            shape.page_info_key,
            tuple(shape.order),
            settled,
            name,
        )
    except (Fallback, ValueError):
        return None
    except Exception:
        return None


def _value(
    literal: Any, variables: dict[str, Any], default: Any, kind: type, settled: frozenset[str]
) -> Any:
    if isinstance(literal, VariableNode):
        name = literal.name.value
        if name in settled and variables.get(name) is None:
            raise Fallback  # absent or null: its default, or the executor's refusal, settles it
        value = variables.get(name, default)
    else:
        value = default if literal is None else literal
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise Fallback
    return value


@dataclass
class FastPathState:
    """The switch, the counters, and the compiled plans (one per persisted document)."""

    enabled: bool = True
    fast: int = 0  # answers the fast path gave (the read lane's included)
    fallback: int = 0  # times the in-transaction fast path handed over to the executor
    lane: int = 0  # of the fast answers, those the read lane gave
    lane_fallback: int = 0  # times the read lane handed over to the normal path
    writes: int = 0  # drafts the write lane created
    write_fallback: int = 0  # times the write lane handed over to the normal path
    max_plans: int = 1024
    plans: OrderedDict[str, Plan | CreatePlan | None] = field(default_factory=OrderedDict)

    def plan(self, query: str, schema: Any) -> Plan | CreatePlan | None:
        """The compiled plan of a persisted document (validated once, against the schema and
        the app's own limits), or None when the normal executor must answer it."""
        if query in self.plans:
            self.plans.move_to_end(query)
            return self.plans[query]
        plan = compile_plan(query)
        if plan is not None and validate(schema._schema, parse(query), RULES):
            plan = None
        if isinstance(plan, CreatePlan):
            plan = for_schema(plan, schema)
        self.plans[query] = plan
        if len(self.plans) > self.max_plans:  # bounded, like the APQ cache it mirrors
            self.plans.popitem(last=False)
        return plan

    async def answer(
        self, plan: Plan, context: Any, variables: dict[str, Any] | None, operation_name: str | None
    ) -> ExecutionResult | None:
        """The fast answer, or None to fall back (counted either way)."""
        data = await _attempt(answer(plan, context, variables or {}, operation_name))
        self.fast += data is not None
        self.fallback += data is None
        return None if data is None else ExecutionResult(data=data, errors=None)

    async def answer_lane(
        self,
        plan: Plan,
        pool: asyncpg.Pool,
        bind: Binder,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult | None:
        """The fast answer from the read lane (``answer_lane``), or None to fall back."""
        data = await _attempt(answer_lane(plan, pool, bind, variables or {}, operation_name))
        self.fast += data is not None
        self.lane += data is not None
        self.lane_fallback += data is None
        return None if data is None else ExecutionResult(data=data, errors=None)

    async def answer_create(
        self,
        plan: CreatePlan,
        schema: Any,
        pool: asyncpg.Pool,
        bind: Binder,
        count: Counter,
        seen: Witness,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult | None:
        """The write lane's answer (``fastwrite.answer_create``), or None to fall back."""
        data = await _attempt(
            answer_create(
                plan,
                schema,
                pool,
                bind,
                count,
                seen,
                variables or {},
                operation_name,
                ACQUIRE_SECONDS,
            )
        )
        self.writes += data is not None
        self.write_fallback += data is None
        return None if data is None else ExecutionResult(data=data, errors=None)


async def _attempt(work: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
    """The data, or None for the normal path: on Fallback, and on any failure (logged)."""
    try:
        return await work
    except Fallback:
        return None
    except (RateLimited, CommitFailed, StorageError):
        # Refused, or perhaps written, or perhaps counted (a limit's storage failing may have
        # counted before its answer was lost): not handed over, or the normal path would count
        # it again; it fails there as well while the storage does.
        raise
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The database is away (restarting, failing over) or the pool is full: the normal path
        # answers, or reports it; no traceback per request.
        log.warning("fast path unavailable (%s); falling back", type(error).__name__)
        return None
    except Exception:
        log.exception("fast path failed; falling back")
        return None


def arguments(plan: Plan, variables: dict[str, Any], operation_name: str | None) -> tuple[int, Any]:
    """The page's ``first`` and ``after``, or Fallback when the executor must settle them."""
    if operation_name is not None and operation_name != plan.name:
        raise Fallback  # the executor's "unknown operation" error
    first = _value(plan.first, variables, 20, int, plan.settled_by_executor)
    after = _value(plan.after, variables, None, str, plan.settled_by_executor)
    if first is None:
        raise Fallback
    return first, after


async def answer(
    plan: Plan, context: Any, variables: dict[str, Any], operation_name: str | None
) -> dict[str, Any]:
    """The response data, built as the normal executor would build it."""
    identity = context.identity
    if isinstance(identity, ApiKeyIdentity) and Scope.DECLARATIONS_READ not in identity.scopes:
        raise Fallback
    first, after = arguments(plan, variables, operation_name)
    try:
        _ = context.actor  # unauthenticated or unverified: the normal path says so
        rows, more = await context.run(service.page_rows, plan.columns, first, after)
    except AppError as error:
        raise Fallback from error
    return build(plan, [row._mapping for row in rows], more)


def build(plan: Plan, rows: Sequence[Mapping[str, Any]], more: bool) -> dict[str, Any]:
    """The data of a page of rows, each leaf serialised as Strawberry's scalars do."""
    edges, now = [], datetime.now(UTC)
    for row in rows:
        node = node_of(plan.leaves, row, now)
        edge: dict[str, Any] = {}
        for edge_key in plan.edge_order:
            if edge_key == plan.cursor_key:
                edge[edge_key] = service.cursor_of(row["created_at"], row["id"])
            else:
                edge[edge_key] = node
        edges.append(edge)
    data: dict[str, Any] = {}
    for part in plan.order:
        if part == plan.edges_key:
            data[part] = edges
        else:
            end = service.cursor_of(rows[-1]["created_at"], rows[-1]["id"]) if rows else None
            data[part] = {
                k: (more if name == "hasNextPage" else end) for k, name in plan.page_info or ()
            }
    return {plan.root_key: data}


async def answer_lane(
    plan: Plan,
    pool: asyncpg.Pool,
    bind: Binder,
    variables: dict[str, Any],
    operation_name: str | None,
) -> dict[str, Any]:
    """The read lane: a page without the ORM, in three statements of one transaction on a plain
    asyncpg connection: authenticate and bind the firm (the same lookups as the normal path,
    one round trip), read the page (the same compiled SQL, under the same RLS), commit. Anyone
    the normal path would refuse falls back to it."""
    first, after = arguments(plan, variables, operation_name)
    try:
        # Bad input is the normal path's to answer: settle it before touching the database.
        if not 1 <= first <= service.MAX_PAGE:
            raise Fallback
        if after is not None:
            pagination.decode_time(after)
    except AppError as error:
        raise Fallback from error
    async with pool.acquire(timeout=ACQUIRE_SECONDS) as conn, conn.transaction():
        if await bind(conn) is None:
            raise Fallback
        rows, more = await service.lane_page_rows(conn, plan.columns, first, after)
    return build(plan, rows, more)
