"""Which document a request runs: persisted operations, for partners and first-party apps.

- A trusted document (the operator's allow-list, or the app's own pages' documents) runs for
  anyone, by id: ``{"documentId": "sha256:<hex>"}`` or Apollo's
  ``{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}}``.
- An API key may run trusted documents only: query text, or an APQ registration, is refused
  with PERSISTED_QUERY_REQUIRED.
- A signed-in first-party client may register an automatic persisted query (text + hash; the
  hash is checked) and then send the hash alone, with the same session; an unknown hash answers
  ``PersistedQueryNotFound`` (PERSISTED_QUERY_NOT_FOUND) so Apollo Client retries with the text.
  Registered documents live in a bounded cache, each for the session that registered it, and
  never become trusted.
- With COVERPROOF_PERSISTED_ONLY, only trusted documents run, for every caller.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import RateLimited
from app.http.negotiation import GraphQLRequest, RequestError
from app.http.state import AppState
from app.partners import documents, first_party
from app.partners.keys import ApiKeyIdentity
from app.ratelimit.policies import Policy
from app.ratelimit.request import RequestLimiter


class PersistedQueryNotFound(RequestError):
    """Answered as a GraphQL error (HTTP 200), the shape Apollo Client's link retries on."""

    def __init__(self) -> None:
        super().__init__(200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")


def _required() -> RequestError:
    return RequestError(
        400, "PERSISTED_QUERY_REQUIRED", "Only persisted (allow-listed) operations may run here."
    )


def _held_trusted(state: AppState, doc_id: str) -> str | None:
    shipped = first_party.DOCUMENTS.get(doc_id)
    return shipped.body if shipped is not None else state.trusted.get(doc_id)


def held(state: AppState, doc_id: str, partner: bool, cookie: str | None) -> str | None:
    """A persisted document the caller (a session's ``cookie``, or a partner's API key) may
    run, if this process holds it in memory (None otherwise: ``resolve`` then loads it, or
    refuses)."""
    trusted = _held_trusted(state, doc_id)
    if trusted is not None or partner or state.settings.persisted_only or cookie is None:
        return trusted
    return state.apq.get(documents.holder(cookie), doc_id)


async def _trusted(state: AppState, session: AsyncSession, doc_id: str) -> str | None:
    body = _held_trusted(state, doc_id)
    if body is None and documents.ID_SHAPE.match(doc_id):
        body = await documents.trusted(session, doc_id)
        if body is not None:
            state.trusted[doc_id] = body  # ids name their text: cached entries never go stale
    return body


async def resolve(
    body: GraphQLRequest,
    identity: object,
    cookie: str | None,
    state: AppState,
    session: AsyncSession,
    limiter: RequestLimiter,
) -> tuple[str, bool]:
    """The query text to execute, and whether it is a persisted document the server holds
    (trusted, or registered by the session whose ``cookie`` the request carries); or a
    refusal."""
    doc_id = body.persisted_id
    partner = isinstance(identity, ApiKeyIdentity)
    strict = partner or state.settings.persisted_only
    if doc_id is None:
        if strict:
            raise _required()
        assert body.query is not None
        return body.query, False
    if body.query is not None:
        return await _register(body.query, doc_id, identity, cookie, state, strict, limiter)
    trusted = await _trusted(state, session, doc_id)
    if trusted is not None:
        return trusted, True
    registered = None
    if not strict and cookie is not None:
        registered = state.apq.get(documents.holder(cookie), doc_id)
    if registered is None:
        raise PersistedQueryNotFound()
    return registered, True


async def _register(
    query: str,
    doc_id: str,
    identity: object,
    cookie: str | None,
    state: AppState,
    strict: bool,
    limiter: RequestLimiter,
) -> tuple[str, bool]:
    if strict:
        raise _required()
    if documents.document_id(query) != doc_id:
        raise RequestError(400, "BAD_USER_INPUT", "The hash does not match the query text.")
    if len(query) > documents.MAX_DOCUMENT_CHARS:
        raise RequestError(413, "PAYLOAD_TOO_LARGE", "The document is too long to persist.")
    user_id = getattr(identity, "user_id", None)
    if user_id is not None and cookie is not None:  # only sessions register; others run it
        try:
            await limiter.hit(Policy.APQ_REGISTRATIONS_PER_USER, str(user_id))
        except RateLimited as limited:
            raise RequestError(429, limited.code, limited.message) from limited
        state.apq.put(documents.holder(cookie), doc_id, query)
        return query, True
    return query, False
