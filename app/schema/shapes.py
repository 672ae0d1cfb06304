"""What the compiled fast paths share: reading a document's selections, and a declaration's
leaves serialised exactly as Strawberry's scalars serialise them (app/schema/declarations.py).

The fast paths (``fastpath`` for persisted pages, ``fastwrite`` for persisted creates) accept
only the selections read here and hand anything else to the normal executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from graphql import FieldNode, SelectionSetNode

from app.declarations import service


class Fallback(Exception):
    """This request takes the normal executor."""


def _text(value: Any) -> Any:
    return value


def _moment(value: Any) -> Any:
    """A datetime or date, left for the response's orjson.dumps: it writes them exactly as
    Strawberry's isoformat() does (the differential test holds it to that), ten times faster."""
    return value


def _uuid(value: Any) -> Any:
    return None if value is None else str(value)


# Node leaf -> (column, serialiser, nullable), matching app/schema/declarations.py.
LEAVES: dict[str, tuple[str, Callable[[Any], Any], bool]] = {
    "id": ("id", _uuid, False),
    "templateId": ("template_id", _uuid, False),
    "templateVersion": ("template_version", _text, False),
    "recipientName": ("recipient_name", _text, False),
    "recipientEmail": ("recipient_email", _text, False),
    "counterpartyId": ("counterparty_id", _uuid, True),
    "dueDate": ("due_date", _moment, True),
    "createdAt": ("created_at", _moment, False),
    "sentAt": ("sent_at", _moment, True),
    "openedAt": ("opened_at", _moment, True),
    "submittedAt": ("submitted_at", _moment, True),
    "revokedAt": ("revoked_at", _moment, True),
    "lastRemindedAt": ("last_reminded_at", _moment, True),
    "reminderCount": ("reminder_count", _text, False),
    "linkExpiresAt": ("token_expires_at", _moment, True),
}
STATUS = "status"


def key(node: FieldNode) -> str:
    """The field's key in the response: its alias, or its name."""
    return node.alias.value if node.alias else node.name.value


def fields(selection_set: SelectionSetNode | None) -> list[FieldNode]:
    """The plain fields of a selection set; Fallback for fragments and directives."""
    if selection_set is None:
        raise Fallback
    found = []
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            raise Fallback  # fragments and directives take the normal path
        found.append(selection)
    return found


def leaves(node: FieldNode) -> list[tuple[str, str]]:
    """A declaration node's selections as (response key, field name), in document order;
    Fallback unless each is a plain leaf the fast paths serialise."""
    found = []
    for leaf in fields(node.selection_set):
        name = leaf.name.value
        if leaf.selection_set or leaf.arguments or (name not in LEAVES and name != STATUS):
            raise Fallback
        found.append((key(leaf), name))
    return found


def node_of(
    selected: tuple[tuple[str, str], ...], row: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """One declaration's selected leaves, from its columns, as the executor would answer them;
    Fallback for a NULL in a non-null field."""
    node = {}
    for response_key, name in selected:
        if name == STATUS:
            node[response_key] = service.status_at(
                row["status"], row["token_expires_at"], now
            ).upper()
            continue
        column, serialise, nullable = LEAVES[name]
        value = row[column]
        if value is None and not nullable:
            raise Fallback
        node[response_key] = serialise(value)
    return node
