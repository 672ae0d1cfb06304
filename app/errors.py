"""One exception hierarchy for the whole app, mapped to GraphQL errors in exactly one place.

    AppError                    (code)
    ├── Unauthenticated         UNAUTHENTICATED
    ├── EmailNotVerified        EMAIL_NOT_VERIFIED
    ├── Forbidden               FORBIDDEN
    ├── NotFound                NOT_FOUND
    ├── BadUserInput            BAD_USER_INPUT   (extensions.fields: per-field messages)
    ├── InvalidCredentials      INVALID_CREDENTIALS
    ├── RateLimited             RATE_LIMITED     (extensions.retryAfter: seconds)
    ├── MethodNotAllowed        METHOD_NOT_ALLOWED
    └── TokenError
        ├── TokenInvalid        TOKEN_INVALID    (unknown, forged or revoked)
        ├── TokenWrongPurpose   TOKEN_WRONG_PURPOSE
        ├── TokenExpired        TOKEN_EXPIRED
        └── TokenUsed           TOKEN_USED

An AppError may carry ``after_rollback``: work that must be on the record even though the
operation failed (a failed sign-in's audit entry). The endpoint runs it in a fresh transaction
after rolling back the failed one.

Anything else raised while resolving is unexpected: it is logged with the request id and the
client sees only INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("coverproof.errors")

MAX_ERRORS = 20


class AppError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    default_message = "Internal server error."

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        self.message = message or self.default_message
        self.extensions = extensions
        self.after_rollback: Callable[[Any], Awaitable[None]] | None = None
        super().__init__(self.message)

    def on_record(self, work: Callable[[Any], Awaitable[None]]) -> AppError:
        """Attach work (given a fresh, unbound session) to run after the rollback."""
        self.after_rollback = work
        return self


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


class AddressUnmailable(BadUserInput):
    # Only an address stored before the rules that refuse it now meets this (a recipient's:
    # every address given now is checked as the outbox checks it), and none can be changed.
    default_message = (
        "This address cannot be mailed as it is written. Revoke this declaration and send a "
        "new one to the address written plainly, like name@example.com."
    )


class AuditChainBroken(AppError):
    code = "AUDIT_CHAIN_BROKEN"
    default_message = "The audit trail does not extend its last signed checkpoint."


def field_error(field: str, message: str) -> BadUserInput:
    """BAD_USER_INPUT naming the one input field that is wrong, and why."""
    return BadUserInput(fields=[{"field": field, "message": message}])


class InvalidCredentials(AppError):
    code = "INVALID_CREDENTIALS"
    default_message = "The email address or password is not correct."


class RateLimited(AppError):
    code = "RATE_LIMITED"
    default_message = "Too many requests; try again later."


class SignedInAsAnother(AppError):
    code = "SIGNED_IN_AS_ANOTHER"
    default_message = (
        "This browser is signed in to another account than the link's. Sign out first, or "
        "confirm that you want to switch to the link's account."
    )


class MethodNotAllowed(AppError):
    code = "METHOD_NOT_ALLOWED"
    default_message = "Send this operation with POST."


class TokenError(AppError):
    code = "TOKEN_INVALID"


class TokenInvalid(TokenError):
    code = "TOKEN_INVALID"
    default_message = "This link is not valid."


class TokenWrongPurpose(TokenError):
    code = "TOKEN_WRONG_PURPOSE"
    default_message = "This link is for something else."


class TokenExpired(TokenError):
    code = "TOKEN_EXPIRED"
    default_message = "This link has expired; ask for a new one."


class TokenUsed(TokenError):
    code = "TOKEN_USED"
    default_message = "This link has already been used."


# character_not_in_repertoire (text), untranslatable_character (jsonb's \u0000)
_UNSTORABLE = {"22021", "22P05"}


def _unstorable_text(error: object) -> bool:
    """PostgreSQL refused a character (a NUL written as an escape inside a GraphQL literal):
    the client's input, not our fault."""
    cause = getattr(error, "orig", None)
    return isinstance(error, DBAPIError) and bool(
        _UNSTORABLE
        & {
            getattr(cause, "sqlstate", None),
            getattr(getattr(cause, "__cause__", None), "sqlstate", None),
        }
    )


def _camel(part: str | int) -> str:
    """GraphQL names are camelCase: report ``signatureName``, not ``signature_name``."""
    head, *rest = str(part).split("_")
    return head + "".join(word.title() for word in rest)


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(_camel(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


# graphql-core's messages for variable values that fail coercion (not validation errors).
_BAD_VARIABLE = re.compile(
    r"^Variable '\$\w+' (got invalid value|has invalid value|of required type .* was not provided"
    r"|of non-null type .* must not be null)"
)
# graphql-core's message for a field's argument it refuses while running the field: validation
# lets a nullable variable stand for a non-null argument (or input field) with a default, and
# only the value sent shows that it is null. Raised as a GraphQLError of its own, then wrapped
# with the field's path, so it reaches format_error as a field error, not a request error.
_BAD_ARGUMENT = re.compile(r"^Argument '\w+' has invalid value")
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def _request_error_code(error: GraphQLError) -> str:
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if _BAD_VARIABLE.match(error.message):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def format_error(
    error: GraphQLError, request_id: str, *, hide_suggestions: bool = False
) -> dict[str, Any]:
    """The client's view of one error: a stable ``extensions.code``, unexpected ones masked,
    and (in production) no "Did you mean" hints that would leak the schema."""
    original = error.original_error
    message = _SUGGESTION.sub("", error.message) if hide_suggestions else error.message
    body: dict[str, Any] = {"message": message}
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        body["path"] = list(error.path)
    if isinstance(original, AppError):
        body["message"] = original.message
        body["extensions"] = {"code": original.code, **original.extensions}
    elif _unstorable_text(original):
        body["message"] = "Text may not contain NUL characters."
        body["extensions"] = {"code": BadUserInput.code}
    elif isinstance(original, ValidationError):
        body["message"] = BadUserInput.default_message
        body["extensions"] = {"code": BadUserInput.code, "fields": _field_errors(original)}
    elif isinstance(original, GraphQLError) and _BAD_ARGUMENT.match(original.message):
        body["extensions"] = {"code": BadUserInput.code}
    elif error.path is None and (
        original is None or isinstance(original, ValueError | TypeError | GraphQLError)
    ):
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


def format_errors(
    errors: list[GraphQLError], request_id: str, *, hide_suggestions: bool = False
) -> list[dict[str, Any]]:
    """Format at most MAX_ERRORS errors, so a hostile document cannot inflate the answer."""
    return [
        format_error(error, request_id, hide_suggestions=hide_suggestions)
        for error in errors[:MAX_ERRORS]
    ]
