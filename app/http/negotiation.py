"""Request parsing and content negotiation for GraphQL over HTTP.

Speaks the GraphQL-over-HTTP specification: ``application/graphql-response+json`` (with 4xx for
request errors) when the client accepts it, ``application/json`` otherwise. Requests are JSON
only: form-encoded, text/plain and multipart bodies are refused, which also stops cross-site
form posts from riding the session cookie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class RequestError(Exception):
    """A request that never reaches GraphQL: it is answered with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    document_id: str | None = None

    @property
    def persisted_id(self) -> str | None:
        """The persisted document named: GraphQL-over-HTTP's ``documentId: "sha256:<hex>"`` or
        Apollo's ``extensions.persistedQuery.sha256Hash``."""
        if self.document_id is not None:
            return self.document_id.removeprefix("sha256:")
        persisted = (self.extensions or {}).get("persistedQuery")
        if isinstance(persisted, dict) and persisted.get("version") == 1:
            value = persisted.get("sha256Hash")
            return value if isinstance(value, str) else ""
        return None


def response_media_type(accept: str | None) -> str:
    """The first supported type the client accepts (``application/json`` when it says none)."""
    if not accept:
        return JSON
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            return JSON
    raise RequestError(406, "NOT_ACCEPTABLE", f"Accept {JSON} or {GRAPHQL_RESPONSE}.")


def require_json(content_type: str | None) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != JSON:
        raise RequestError(415, "UNSUPPORTED_MEDIA_TYPE", "Send the request as application/json.")


def parse_body(body: bytes) -> GraphQLRequest:
    """Parse and shape-check the JSON body; every failure is a 400, never a 500."""
    try:
        data = orjson.loads(body)  # strict UTF-8, bounded nesting depth
    except orjson.JSONDecodeError as error:
        raise RequestError(400, "BAD_REQUEST", "The body is not valid JSON.") from error
    return _shape(data)


def parse_query_params(params: Mapping[str, str]) -> GraphQLRequest:
    """A GET request: only persisted documents may be named this way (never query text)."""
    if "query" in params:
        raise RequestError(405, "METHOD_NOT_ALLOWED", "Send GraphQL query text with POST.")
    data: dict[str, Any] = {}
    for name in ("documentId", "operationName"):
        if name in params:
            data[name] = params[name]
    for name in ("variables", "extensions"):
        if name in params:
            try:
                data[name] = orjson.loads(params[name])
            except orjson.JSONDecodeError as error:
                raise RequestError(400, "BAD_REQUEST", f"`{name}` is not valid JSON.") from error
    return _shape(data)


# Lists and objects inside one another in a request's values: ours nest fewer than ten deep
# (a template's questions, an answer's list of rows), and code that walks a value recursively
# (Strawberry's, pydantic's, ours) must not meet one deep enough to exhaust the stack.
MAX_NESTING = 32


def _refusal(*values: Any) -> str | None:
    """Why the request's values cannot be taken, or None: a NUL character, which PostgreSQL
    text cannot store (refused here, once, rather than deep inside a query), or nesting past
    ``MAX_NESTING``. A loop, not recursion: the JSON may be nested as deep as the parser
    allows."""
    pending = [(value, 0) for value in values]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Text may not contain NUL characters."
        elif isinstance(item, dict | list):
            if depth == MAX_NESTING:
                return f"Values may be nested at most {MAX_NESTING} deep."
            inner = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in inner)
    return None


def _shape(data: Any) -> GraphQLRequest:
    if isinstance(data, list):
        raise RequestError(400, "BAD_REQUEST", "Batched operations are not supported.")
    if not isinstance(data, dict):
        raise RequestError(400, "BAD_REQUEST", "The body must be a JSON object.")
    query, variables = data.get("query"), data.get("variables")
    operation_name, extensions = data.get("operationName"), data.get("extensions")
    document_id = data.get("documentId")
    if not isinstance(document_id, str | None):
        raise RequestError(400, "BAD_REQUEST", "`documentId` must be a string.")
    if not isinstance(extensions, dict | None):
        raise RequestError(400, "BAD_REQUEST", "`extensions` must be an object or null.")
    request = GraphQLRequest(query, variables, operation_name, extensions, document_id)
    # Without query text, a document the server can name (an APQ of another version names none).
    if not (isinstance(query, str) and query) and not (
        query is None and request.persisted_id is not None
    ):
        raise RequestError(400, "BAD_REQUEST", "`query` must be a non-empty string.")
    if not isinstance(variables, dict | None):
        raise RequestError(400, "BAD_REQUEST", "`variables` must be an object or null.")
    if not isinstance(operation_name, str | None):
        raise RequestError(400, "BAD_REQUEST", "`operationName` must be a string or null.")
    refusal = _refusal(query, variables, operation_name)
    if refusal is not None:
        raise RequestError(400, "BAD_USER_INPUT", refusal)
    return request


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
