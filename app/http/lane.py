"""The read lane: a signed-in member's persisted page query, answered before the ORM.

The compiled fast path (``app/schema/fastpath.py``) already skips graphql-core's per-field
work; what remained was the per-request cost of SQLAlchemy's session and five round trips. Here
a request whose document this process already holds, whose plan compiled and which carries a
session cookie (and no API key) is answered on a plain asyncpg connection in one transaction:
the cookie is resolved and its firm bound in one call, then the same compiled SQL reads the
page under the same RLS. Everything else, and anyone the normal path would refuse, falls back
to it, so its answers (and its errors) are the normal path's.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from strawberry.types import ExecutionResult

from app.auth import sessions
from app.http import persisted
from app.http.negotiation import GraphQLRequest
from app.http.state import AppState


async def answer(request: Request, state: AppState, body: GraphQLRequest) -> ExecutionResult | None:
    """The lane's answer, or None for the normal path."""
    fast_path, pool = state.fast_path, state.read_pool
    if not fast_path.enabled or pool is None or body.query is not None:
        return None
    token = request.cookies.get(sessions.COOKIE_NAME)
    if body.persisted_id is None or token is None or "authorization" in request.headers:
        return None  # an API key's first use is audited, which the normal path does
    query = persisted.held(state, body.persisted_id)
    plan = fast_path.plan(query, state.schema) if query is not None else None
    if plan is None:
        return None
    idle = timedelta(minutes=state.settings.session_idle_minutes)
    return await fast_path.answer_signed_in(
        plan, pool, token, idle, body.variables, body.operation_name
    )
