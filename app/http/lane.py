"""The lanes: a persisted page query, or a persisted createDeclaration, answered before the ORM.

The compiled fast path (``app/schema/fastpath.py``) already skips graphql-core's per-field
work; what remained was the per-request cost of SQLAlchemy's session and five round trips. Here
a request whose document this process already holds and whose plan compiled, from a session
cookie or from an API key (not both), is answered on a plain asyncpg connection in one
transaction: the caller is authenticated and its firm bound in one call, then the same compiled
SQL reads the page under the same RLS. Everything else, and anyone the normal path would
refuse, falls back to it, so its answers (and its errors) are the normal path's. A key's first
use falls back too: the normal path audits it.

The write lane (``app/schema/fastwrite.py``) does the same for a persisted
``createDeclaration`` over POST, from a signed-in member or a used key with the write scope: the
same row and audit entry, written in one transaction.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from graphql import GraphQLError
from limits.errors import StorageError
from starlette.requests import Request
from strawberry.types import ExecutionResult

from app.auth import sessions
from app.auth.actor import Actor, Role
from app.db import calls
from app.errors import RateLimited
from app.http import persisted
from app.http.credentials import Credentials, credentials
from app.http.negotiation import GraphQLRequest, RequestError
from app.http.state import AppState, request_limiter
from app.partners import keys
from app.ratelimit.client_ip import client_ip
from app.ratelimit.policies import Policy
from app.ratelimit.request import RequestLimiter
from app.schema.context import actor_of
from app.schema.fastwrite import Binder, CreatePlan


async def answer(request: Request, state: AppState, body: GraphQLRequest) -> ExecutionResult | None:
    """The lane's answer, or None for the normal path."""
    fast_path, pool = state.fast_path, state.lane_pool
    if not fast_path.enabled or pool is None or body.query is not None:
        return None
    presented = credentials(request)
    if body.persisted_id is None or presented.both or presented.anonymous:
        return None  # neither (anonymous), or both (refused): the normal path answers
    partner = presented.authorization is not None
    query = persisted.held(state, body.persisted_id, partner, presented.cookie)
    plan = fast_path.plan(query, state.schema) if query is not None else None
    if plan is None:
        return None
    if isinstance(plan, CreatePlan):
        if request.method != "POST":
            return None  # a mutation over GET: the normal path refuses it
        return await _create(request, state, plan, presented, body)
    limiter = request_limiter(request, state)
    # A read records nothing, so its caller's address is not worked out.
    bind = _binder(state, presented, {keys.Scope.DECLARATIONS_READ}, limiter, None)
    try:
        result = await fast_path.answer_lane(plan, pool, bind, body.variables, body.operation_name)
    except RateLimited as limited:  # refused as ``graphql.authenticate`` refuses it
        raise RequestError(429, limited.code, limited.message) from limited
    if result is None:
        limiter.abandon_run()  # so the normal path does not count it again
    return result


async def _create(
    request: Request,
    state: AppState,
    plan: CreatePlan,
    presented: Credentials,
    body: GraphQLRequest,
) -> ExecutionResult | None:
    """A persisted ``createDeclaration`` from a signed-in member or a partner's used key with
    the write scope (``app/schema/fastwrite.py``)."""
    assert state.lane_pool is not None
    limiter = request_limiter(request, state)
    lost: list[StorageError] = []

    async def count(actor: Actor) -> None:
        try:
            await limiter.hit(Policy.MUTATIONS_PER_USER, str(actor.id))
        except StorageError as error:
            lost.append(error)
            raise

    ip = client_ip(request.scope, state.settings.trusted_proxies)
    needed = {keys.Scope.DECLARATIONS_WRITE, *map(keys.Scope, plan.reads)}
    bind = _binder(state, presented, needed, limiter, ip)
    try:
        result = await state.fast_path.answer_create(
            plan,
            state.schema,
            state.lane_pool,
            bind,
            count,
            state.witness,
            body.variables,
            body.operation_name,
        )
    except RateLimited as limited:  # the key's own limit, refused as ``authenticate`` does
        raise RequestError(429, limited.code, limited.message) from limited
    except StorageError as error:
        if not lost:
            raise  # the key's count: ``authenticate`` fails alike, outside the operation
        # The mutation's count, which the storage may have made before its answer was lost:
        # not handed over to count again, but failed as the normal path's resolver fails.
        failed = GraphQLError(str(error), path=[plan.root_key], original_error=error)
        return ExecutionResult(data=None, errors=[failed])
    if result is None:
        limiter.abandon_run()  # so the normal path does not count them again
    return result


def _binder(
    state: AppState,
    presented: Credentials,
    scopes: set[keys.Scope],
    limiter: RequestLimiter,
    ip: str | None,
) -> Binder:
    """The caller's binder: the session's, or the key's, which must hold ``scopes``."""
    if presented.cookie is not None:
        return _member(presented.cookie, state.settings.session_idle, ip)
    return _partner(presented.api_key, scopes, limiter, ip)


def _member(token: str, idle: timedelta, ip: str | None) -> Binder:
    """Binds a live, verified session and answers its caller as the normal path's context
    does (the role is the service's to check)."""

    async def bind(conn: asyncpg.Connection) -> Actor | None:
        if not token or len(token) > sessions.MAX_TOKEN_CHARS:
            return None
        found = await calls.bind_session(
            conn, sessions.token_hash(token), int(idle.total_seconds())
        )
        if found is None or not found["email_verified"]:
            return None
        identity = sessions.SessionIdentity(
            found["session_id"], found["user_id"], found["firm_id"], Role(found["role"]), True
        )
        return actor_of(identity, ip)

    return bind


def _partner(
    key: str | None,
    scopes: set[keys.Scope],
    limiter: RequestLimiter,
    ip: str | None,
) -> Binder:
    """Binds a used key that holds ``scopes`` and counts the request against the key's limit
    (before any work, as the normal path does)."""

    async def bind(conn: asyncpg.Connection) -> Actor | None:
        if key is None or not keys.KEY_SHAPE.match(key):
            return None
        found = await calls.bind_api_key(conn, keys.secret_hash(key))
        if found is None or not scopes <= set(found["scopes"]):
            return None
        await limiter.hit(Policy.API_KEY_REQUESTS, str(found["key_id"]))
        identity = keys.ApiKeyIdentity(
            found["key_id"], found["firm_id"], "", frozenset(found["scopes"]), first_use=False
        )
        return actor_of(identity, ip)

    return bind
