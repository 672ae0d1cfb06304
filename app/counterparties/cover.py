"""A counterparty's professional indemnity cover status, from its latest confirmation.

Pure functions of dates: the caller passes ``today`` (the clock is injected), so status moves
from covered to expiring to lapsed as days pass without anything being stored or rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

DEFAULT_WINDOW_DAYS = 30
PERIOD_END = "period_end"  # the pi_cover built-in's question id for the policy end date


class CoverState(StrEnum):
    covered = "covered"
    expiring = "expiring"
    lapsed = "lapsed"
    unknown = "unknown"


@dataclass(frozen=True)
class CoverStatus:
    """The state of cover and, when known, the last day it is in force."""

    state: CoverState
    until: date | None


def cover_status(
    period_end: date | None, today: date, window_days: int = DEFAULT_WINDOW_DAYS
) -> CoverStatus:
    """Cover status on ``today`` for a policy whose period ends on ``period_end``.

    The end date is the last day of cover, so a policy ending today is still in force (but
    expiring); it has lapsed from the day after. Expiring means it ends within ``window_days``.
    """
    if window_days < 0:
        raise ValueError("window_days must not be negative")
    if period_end is None:
        return CoverStatus(CoverState.unknown, None)
    if period_end < today:
        state = CoverState.lapsed
    elif period_end <= today + timedelta(days=window_days):
        state = CoverState.expiring
    else:
        state = CoverState.covered
    return CoverStatus(state, period_end)


def period_end_of(answers: dict[str, Any] | None) -> date | None:
    """The policy end date from a submitted pi_cover confirmation, or None if it has none.

    Submitted answers were validated (dates stored as ISO strings); anything else here means
    the answers came from another template, so the status is unknown rather than an error.
    """
    if not answers:
        return None
    value = answers.get(PERIOD_END)
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
