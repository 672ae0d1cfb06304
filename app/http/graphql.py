"""The /graphql endpoint: authenticate, open one transaction, execute, commit or roll back.

Every operation runs inside exactly one database transaction, bound to the caller's firm. It
commits only when the operation produced no error; any error rolls back all of it, so a mutation
is never half-written and never written without its audit entry. Refusals that must still be on
the record (a failed sign-in) are written afterwards, in a transaction of their own, as is what
a committed operation leaves for afterwards (ending the session a new sign-in replaced). An
operation whose transaction PostgreSQL rolled back to end a deadlock runs again, in a new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from app.auth import sessions
from app.auth.sessions import SessionIdentity
from app.db.tenant import transaction, worth_running_again
from app.errors import AppError, MethodNotAllowed, RateLimited, Unauthenticated, format_errors
from app.http import lane, persisted
from app.http.credentials import credentials, identify
from app.http.graphiql import graphiql_page
from app.http.middleware import BodyTooLarge
from app.http.negotiation import (
    GRAPHQL_RESPONSE,
    GraphQLRequest,
    RequestError,
    error_body,
    parse_body,
    parse_query_params,
    require_json,
    response_media_type,
)
from app.http.state import AppState, app_state, request_limiter
from app.partners import keys
from app.ratelimit.client_ip import client_ip
from app.ratelimit.policies import Policy
from app.schema.context import Context
from app.schema.fastpath import Plan

log = logging.getLogger("coverproof.graphql")

ALLOWED = frozenset({OperationType.QUERY, OperationType.MUTATION})
Identity = SessionIdentity | keys.ApiKeyIdentity | None
NO_STORE = {"cache-control": "no-store"}


class _Rollback(Exception):
    def __init__(self, result: ExecutionResult) -> None:
        self.result = result


def check_origin(request: Request, state: AppState) -> None:
    """Cross-site requests may not ride the cookie: a browser's Origin must be one we trust."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in state.settings.trusted_origins:
        raise RequestError(403, "FORBIDDEN_ORIGIN", "This origin may not call the API.")


# The request's context, where the endpoint finds it when the operation raised (a 500).
CONTEXT = "coverproof.context"


def build_context(request: Request, state: AppState, session: Any, identity: Any) -> Context:
    request.scope["state"][CONTEXT] = context = Context(
        request_id=request.scope["state"]["request_id"],
        session=session,
        settings=state.settings,
        secret_key=state.secret_key,
        mail_key=state.mail_key,
        limiter=request_limiter(request, state),
        signing_key=state.signing_key,
        ip=client_ip(request.scope, state.settings.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
        identity=identity,
        method=request.method,
        storage=state.storage,
        sessions=state.sessions,
    )
    return context


async def authenticate(request: Request, state: AppState, session: AsyncSession) -> Identity:
    """A session cookie or a partner's API key (in the Authorization header only, never the URL),
    not both; a key that is unknown, revoked or expired is refused outright."""
    presented = credentials(request)
    if presented.both:
        raise RequestError(400, "BAD_REQUEST", "Send either an API key or a session, not both.")
    identity = await identify(session, presented, state.settings.session_idle)
    if presented.authorization is None:
        return identity
    if not isinstance(identity, keys.ApiKeyIdentity):
        raise RequestError(401, "UNAUTHENTICATED", "The API key is not valid.")
    try:
        await request_limiter(request, state).hit(Policy.API_KEY_REQUESTS, str(identity.key_id))
    except RateLimited as limited:
        raise RequestError(429, limited.code, limited.message) from limited
    return identity


class _RunAgain(Exception):
    """PostgreSQL rolled the operation's transaction back to end a deadlock: run it again."""


# How many times an operation runs at most. A deadlock's victim is rolled back whole, and run
# again it finds the transaction it deadlocked with gone (committed or rolled back): two admins
# removing each other, each request holding its own session's row (marked seen) as it waits
# for the other's, say.
RUNS = 3


async def execute(
    request: Request, state: AppState, body: GraphQLRequest
) -> tuple[ExecutionResult, Context]:
    """Run one operation in one transaction; the context is bound to the caller's firm. A
    transaction PostgreSQL ended to break a deadlock runs again, as if the client had retried:
    nothing of it was kept, and what it did outside the database was undone with it."""
    for _ in range(RUNS - 1):
        try:
            return await _execute_once(request, state, body, last=False)
        except _RunAgain:
            request_id = request.scope["state"]["request_id"]
            log.warning("request %s deadlocked; running it again", request_id)
    return await _execute_once(request, state, body, last=True)


async def _execute_once(
    request: Request, state: AppState, body: GraphQLRequest, *, last: bool
) -> tuple[ExecutionResult, Context]:
    allowed = ALLOWED if request.method == "POST" else frozenset({OperationType.QUERY})
    try:
        async with transaction(state.sessions) as session:
            identity = await authenticate(request, state, session)
            cookie = credentials(request).cookie
            limiter = request_limiter(request, state)
            query, held = await persisted.resolve(body, identity, cookie, state, session, limiter)
            context = build_context(request, state, session, identity)
            context.persisted = held
            if isinstance(identity, keys.ApiKeyIdentity) and identity.first_use:
                try:
                    await context.run(keys.record_first_use)
                except Unauthenticated as revoked:  # revoked while it was being looked up
                    raise RequestError(401, revoked.code, "The API key is not valid.") from revoked
            plan = state.fast_path.plan(query, state.schema) if context.persisted else None
            fast = None
            if isinstance(plan, Plan) and state.fast_path.enabled:
                fast = await state.fast_path.answer(
                    plan, context, body.variables, body.operation_name
                )
            try:
                result = fast or await state.schema.execute(
                    query,
                    variable_values=body.variables,
                    context_value=context,
                    operation_name=body.operation_name,
                    allowed_operation_types=allowed,
                )
            except InvalidOperationTypeError as e:
                if request.method == "GET":
                    message = "Only persisted queries use GET."
                    raise RequestError(405, "METHOD_NOT_ALLOWED", message) from e
                raise RequestError(400, "BAD_REQUEST", "This operation cannot run here.") from e
            except (CannotGetOperationTypeError, MissingQueryError) as e:
                raise RequestError(400, "BAD_REQUEST", "The operation cannot be run here.") from e
            if result.errors:
                raise _Rollback(result)
    except DBAPIError as error:
        if not last and worth_running_again(error):
            request_limiter(request, state).abandon_run()
            raise _RunAgain from error
        raise
    except _Rollback as rollback:
        if not last and any(map(worth_running_again, rollback.result.errors or ())):
            request_limiter(request, state).abandon_run()
            raise _RunAgain from None
        await record_refusals(state, rollback.result)
        refused = _refused_method(rollback.result)
        if refused is not None:
            # An operation a GET may not run (one that records what it shows) is answered as
            # every other GET refusal is: 405, naming POST.
            raise RequestError(405, refused.code, refused.message) from None
        # Nothing of a failed operation was kept, so none of it is shown either: no id of a row
        # that does not exist, no download link whose audit entry was rolled back.
        rollback.result.data = None
        return rollback.result, context
    await after_commit(state, context)
    return result, context


async def after_commit(state: AppState, context: Context) -> None:
    """What a committed operation left for afterwards, each in a transaction of its own (which
    binds its own tenant). The operation stands whatever happens here: a failure is logged."""
    for work in context.after_commit:
        try:
            async with transaction(state.sessions) as session:
                await work(session)
        except Exception:
            log.error("work after a commit failed (request %s)", context.request_id, exc_info=True)


async def record_refusals(state: AppState, result: ExecutionResult) -> None:
    """Write what a failed operation must leave on the record, each in its own transaction,
    run again if PostgreSQL ends it to break a deadlock (a failed sign-in's count clears old
    rows, then takes the firm's chain lock; an acceptance takes the lock, then its row)."""
    for error in result.errors or ():
        original = error.original_error
        if isinstance(original, AppError) and original.after_rollback is not None:
            for run in range(1, RUNS + 1):
                try:
                    async with transaction(state.sessions) as session:
                        await original.after_rollback(session)
                    break
                except DBAPIError as failed:
                    if run == RUNS or not worth_running_again(failed):
                        raise
                    log.warning("a refusal's record deadlocked; running it again")


def _refused_method(result: ExecutionResult) -> MethodNotAllowed | None:
    for error in result.errors or ():
        if isinstance(error.original_error, MethodNotAllowed):
            return error.original_error
    return None


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: nothing executed, so no error has a path."""
    return result.data is None and all(error.path is None for error in result.errors or ())


def render(result: ExecutionResult, media_type: str, request_id: str, production: bool) -> Response:
    payload: dict[str, Any] = {}
    if result.errors:
        payload["errors"] = format_errors(result.errors, request_id, hide_suggestions=production)
    if not _is_request_error(result):
        payload["data"] = result.data
    status = 400 if media_type == GRAPHQL_RESPONSE and _is_request_error(result) else 200
    return Response(orjson.dumps(payload), status, NO_STORE, media_type)


def apply_cookies(response: Response, context: Context, state: AppState) -> None:
    """The session cookie: HttpOnly, Secure, SameSite=Lax, Path=/, host-only (``__Host-``)."""
    if context.new_session_cookie is not None:
        response.set_cookie(
            sessions.COOKIE_NAME,
            context.new_session_cookie,
            max_age=state.settings.session_lifetime_hours * 3600,
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
    elif context.clear_session_cookie:
        response.delete_cookie(
            sessions.COOKIE_NAME, path="/", secure=True, httponly=True, samesite="lax"
        )


async def answer_when_due(context: Context | None) -> None:
    """Wait until the moment the operation's flow answers no sooner than (if it set one)."""
    if context is not None and context.answer_not_before is not None:
        await asyncio.sleep(context.answer_not_before - time.monotonic())


async def graphql_endpoint(request: Request) -> Response:
    state = app_state(request)
    request_id = request.scope["state"]["request_id"]
    try:
        if request.method == "GET" and not request.query_params:
            if not state.settings.is_production:
                return HTMLResponse(*graphiql_page())
            raise RequestError(405, "METHOD_NOT_ALLOWED", "Send GraphQL operations with POST.")
        media_type = response_media_type(request.headers.get("accept"))
        check_origin(request, state)
        if request.method == "GET":
            body = parse_query_params(request.query_params)
            if body.persisted_id is None:
                raise RequestError(405, "METHOD_NOT_ALLOWED", "Only persisted queries use GET.")
        else:
            require_json(request.headers.get("content-type"))
            body = parse_body(await request.body())
        fast = await lane.answer(request, state, body)
        result, context = (fast, None) if fast is not None else await execute(request, state, body)
    except RequestError as error:
        headers = {**NO_STORE, **({"allow": "GET, POST"} if error.status == 405 else {})}
        return Response(
            error_body(error.code, error.message), error.status, headers, "application/json"
        )
    except BodyTooLarge:
        raise  # the middleware answers 413
    except Exception:
        log.exception("operation failed [request %s]", request_id)
        # A failure is answered no sooner than the flow's answer would have been, or its
        # timing would tell what the wait hides (a registered address's work failing).
        await answer_when_due(request.scope["state"].get(CONTEXT))
        return Response(
            error_body("INTERNAL_SERVER_ERROR", "Internal server error."),
            500,
            NO_STORE,
            "application/json",
        )
    await answer_when_due(context)
    response = render(result, media_type, request_id, state.settings.is_production)
    if request.method == "GET":
        # A persisted GET may be cached by the browser alone, never by a shared cache.
        response.headers["cache-control"] = "private, no-store"
    if not result.errors and context is not None:
        apply_cookies(response, context, state)
        if context.mail_queued:
            state.mailer.wake()
    return response
