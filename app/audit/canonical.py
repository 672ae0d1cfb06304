"""Canonical bytes of an audit entry: what its hash covers (see docs/audit.md).

UTF-8 JSON with sorted keys and no insignificant whitespace; no floats (their text form is not
portable); timestamps as RFC 3339 UTC with exactly six fractional digits and a ``Z``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)
FORMAT_VERSION = 1


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, four-digit year, six fractional digits, ``Z``. Built from isoformat(),
    several times faster than strftime (a verification formats one per entry), and the same
    on every platform: strftime's ``%Y`` leaves a year below 1000 unpadded on some."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    text = utc.isoformat()  # a zero fraction is left out
    return text[:26] + "Z" if utc.microsecond else text[:19] + ".000000Z"


def _check_no_floats(value: Any) -> None:
    """By isinstance, unlike ``holds_float``: what the app builds may hold a float subclass,
    an OrderedDict or a tuple, each of which json.dumps would write."""
    if isinstance(value, float):
        raise TypeError("audit details may not hold floats; use integers or strings")
    if isinstance(value, dict):
        for item in value.values():
            _check_no_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_no_floats(item)


def holds_float(value: Any) -> bool:
    """Whether parsed JSON holds a float anywhere. By exact type (a JSON parser makes only
    dict, list, str, int, float, bool and None), and without a call per scalar: verification
    asks once for every entry."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and holds_float(item)):
            return True
    return False


def encode(body: dict[str, Any]) -> bytes:
    _check_no_floats(body)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_body(
    *,
    firm_id: str | None,
    seq: int,
    occurred_at: datetime,
    actor_type: str,
    actor_id: str | None,
    action: str,
    target_type: str | None,
    target_id: str | None,
    details: dict[str, Any],
    ip: str | None,
) -> dict[str, Any]:
    """The fields an entry's hash covers, as the dict that ``encode`` serialises."""
    return written_body(
        seq,
        firm_id,
        timestamp(occurred_at),
        actor_type,
        actor_id,
        action,
        target_type,
        target_id,
        details,
        ip,
    )


def written_body(
    seq: int,
    firm_id: str | None,
    occurred_at: str,
    actor_type: str,
    actor_id: str | None,
    action: str,
    target_type: str | None,
    target_id: str | None,
    details: Any,
    ip: str | None,
) -> dict[str, Any]:
    """``entry_body`` with its timestamp already written as ``timestamp`` writes it. Positional,
    in the order verification streams the fields: it runs once for every entry verified."""
    return {
        "v": FORMAT_VERSION,
        "firm_id": firm_id,
        "seq": seq,
        "occurred_at": occurred_at,
        "actor": {"type": actor_type, "id": actor_id},
        "action": action,
        "target": {"type": target_type, "id": target_id},
        "details": details,
        "ip": ip,
    }


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()
