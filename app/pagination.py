"""Cursor pagination shared by every list: opaque cursors of (sort key, id), search patterns."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from app.errors import BadUserInput, field_error

# The longest sort key a list orders by: a counterparty's name (app/counterparties/schemas.py).
MAX_KEY_CHARS = 200


def not_a_cursor() -> BadUserInput:
    """The refusal of an ``after`` that no list of ours handed out."""
    return field_error("after", "Not a cursor from this list.")


def encode(key: str, ident: uuid.UUID) -> str:
    """An opaque position: the (sort key, id) a list is ordered by. Its characters as UTF-8,
    not as JSON's escapes, which take up to 12 bytes each: a name of 50 characters from outside
    ASCII made a cursor longer than ``decode`` took, and paging stopped there."""
    raw = json.dumps([key, str(ident)], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# The longest cursor ``encode`` makes of a key of MAX_KEY_CHARS: a control character, which JSON
# escapes in six bytes, is the longest a character can be (no name holds one; any other takes
# four at most).
MAX_CURSOR = len(encode("\x00" * MAX_KEY_CHARS, uuid.UUID(int=0)))


def decode(cursor: str) -> tuple[str, uuid.UUID]:
    """The (sort key, id) of a cursor from ``encode``; BAD_USER_INPUT for anything else."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        key, ident = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(key, str) or not isinstance(ident, str):
            raise TypeError(key)
        key.encode()  # a lone surrogate is valid JSON but no UTF-8: it cannot be sent to SQL
        return key, uuid.UUID(ident)
    except (ValueError, TypeError, RecursionError) as error:  # binascii.Error is a ValueError
        raise not_a_cursor() from error


def decode_time(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A cursor whose sort key is a timestamp (UTC, with its zone)."""
    key, ident = decode(cursor)
    try:
        moment = datetime.fromisoformat(key)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment.astimezone(UTC), ident
    except (ValueError, OverflowError) as error:
        raise not_a_cursor() from error


def like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere: its own %, _ and \\ match only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
