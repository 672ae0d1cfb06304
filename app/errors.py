"""One exception hierarchy for the whole app, mapped to GraphQL errors in exactly one place.

    AppError                    (code)
    ├── Unauthenticated         UNAUTHENTICATED
    ├── EmailNotVerified        EMAIL_NOT_VERIFIED
    ├── Forbidden               FORBIDDEN
    ├── NotFound                NOT_FOUND
    ├── BadUserInput            BAD_USER_INPUT   (extensions.fields: per-field messages)
    └── RateLimited             RATE_LIMITED     (extensions.retryAfter: seconds)

Anything else raised while resolving is unexpected: it is logged with the request id and the
client sees only INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from pydantic import ValidationError

log = logging.getLogger("coverproof.errors")

MAX_ERRORS = 20


class AppError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    default_message = "Internal server error."

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        self.message = message or self.default_message
        self.extensions = extensions
        super().__init__(self.message)


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    default_message = "Sign in to do this."


class EmailNotVerified(AppError):
    code = "EMAIL_NOT_VERIFIED"
    default_message = "Verify your email address first."


class Forbidden(AppError):
    code = "FORBIDDEN"
    default_message = "Your role does not allow this."


class NotFound(AppError):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(AppError):
    code = "BAD_USER_INPUT"
    default_message = "The input is not valid."


class RateLimited(AppError):
    code = "RATE_LIMITED"
    default_message = "Too many requests; try again later."


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


def _request_error_code(error: GraphQLError) -> str:
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable"):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    """The client's view of one error: a stable ``extensions.code``, unexpected ones masked."""
    original = error.original_error
    body: dict[str, Any] = {"message": error.message}
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        body["path"] = list(error.path)
    if isinstance(original, AppError):
        body["message"] = original.message
        body["extensions"] = {"code": original.code, **original.extensions}
    elif isinstance(original, ValidationError):
        body["message"] = BadUserInput.default_message
        body["extensions"] = {"code": BadUserInput.code, "fields": _field_errors(original)}
    elif error.path is None and (original is None or isinstance(original, ValueError | TypeError)):
        body["extensions"] = {"code": _request_error_code(error)}
    else:
        log.error(
            "unexpected error [request %s] at %s",
            request_id,
            error.path,
            exc_info=original or error,
        )
        body = {"message": AppError.default_message}
        if error.path:
            body["path"] = list(error.path)
        body["extensions"] = {"code": AppError.code, "requestId": request_id}
    return body


def format_errors(errors: list[GraphQLError], request_id: str) -> list[dict[str, Any]]:
    """Format at most MAX_ERRORS errors, so a hostile document cannot inflate the answer."""
    return [format_error(error, request_id) for error in errors[:MAX_ERRORS]]
