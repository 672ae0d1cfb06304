"""The /graphql endpoint: authenticate, bind one tenant transaction, execute, commit or roll back.

Every operation runs inside exactly one database transaction whose tenant is the caller's firm.
The transaction commits only when the operation produced no error; any error rolls back all of
it, so a mutation is never half-written and never written without its audit entry.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from app.auth import sessions
from app.db.tenant import bind_tenant, transaction
from app.errors import format_errors
from app.http.graphiql import graphiql_page
from app.http.negotiation import (
    GRAPHQL_RESPONSE,
    RequestError,
    error_body,
    parse_body,
    require_json,
    response_media_type,
)
from app.http.state import AppState, app_state
from app.schema.context import Context

log = logging.getLogger("coverproof.graphql")

ALLOWED = frozenset({OperationType.QUERY, OperationType.MUTATION})
NO_STORE = {"cache-control": "no-store"}


class _Rollback(Exception):
    def __init__(self, result: ExecutionResult) -> None:
        self.result = result


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def check_origin(request: Request, state: AppState) -> None:
    """Cross-site requests may not ride the cookie: a browser's Origin must be one we trust."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in state.settings.trusted_origins:
        raise RequestError(403, "FORBIDDEN_ORIGIN", "This origin may not call the API.")


async def execute(request: Request, state: AppState, body: Any) -> ExecutionResult:
    """Run one operation in one tenant-bound transaction."""
    request_id = request.scope["state"]["request_id"]
    idle = timedelta(minutes=state.settings.session_idle_minutes)
    try:
        async with transaction(state.sessions) as session:
            cookie = request.cookies.get(sessions.COOKIE_NAME)
            identity = await sessions.lookup(session, cookie, idle) if cookie else None
            await bind_tenant(
                session,
                identity.firm_id if identity else None,
                identity.user_id if identity else None,
            )
            context = Context(request_id, session, state.settings, client_ip(request), identity)
            result = await state.schema.execute(
                body.query,
                variable_values=body.variables,
                context_value=context,
                operation_name=body.operation_name,
                allowed_operation_types=ALLOWED,
            )
            if result.errors:
                raise _Rollback(result)
            return result
    except _Rollback as rollback:
        return rollback.result


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: nothing executed, so no error has a path."""
    return result.data is None and all(error.path is None for error in result.errors or ())


def render(result: ExecutionResult, media_type: str, request_id: str) -> Response:
    payload: dict[str, Any] = {}
    if result.errors:
        payload["errors"] = format_errors(result.errors, request_id)
    payload["data"] = result.data
    if _is_request_error(result):
        del payload["data"]
    status = 400 if media_type == GRAPHQL_RESPONSE and _is_request_error(result) else 200
    return Response(orjson.dumps(payload), status, NO_STORE, media_type)


async def graphql_endpoint(request: Request) -> Response:
    state = app_state(request)
    request_id = request.scope["state"]["request_id"]
    try:
        if request.method == "GET":
            if not state.settings.is_production and not request.query_params:
                return HTMLResponse(*graphiql_page())
            raise RequestError(405, "METHOD_NOT_ALLOWED", "Send GraphQL operations with POST.")
        media_type = response_media_type(request.headers.get("accept"))
        require_json(request.headers.get("content-type"))
        check_origin(request, state)
        body = parse_body(await request.body())
        result = await execute(request, state, body)
    except RequestError as error:
        headers = {**NO_STORE, **({"allow": "POST"} if error.status == 405 else {})}
        return Response(
            error_body(error.code, error.message), error.status, headers, "application/json"
        )
    except Exception:
        log.exception("operation failed [request %s]", request_id)
        return Response(
            error_body("INTERNAL_SERVER_ERROR", "Internal server error."),
            500,
            NO_STORE,
            "application/json",
        )
    return render(result, media_type, request_id)
