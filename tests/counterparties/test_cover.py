"""Cover status moves from covered to expiring to lapsed as the injected clock advances."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from app.counterparties.cover import CoverState, CoverStatus, cover_status, period_end_of

END = date(2026, 3, 31)


@pytest.mark.parametrize(
    ("today", "state"),
    [
        (END - timedelta(days=365), CoverState.covered),
        (END - timedelta(days=31), CoverState.covered),
        (END - timedelta(days=30), CoverState.expiring),
        (END - timedelta(days=1), CoverState.expiring),
        (END, CoverState.expiring),
        (END + timedelta(days=1), CoverState.lapsed),
        (END + timedelta(days=400), CoverState.lapsed),
    ],
)
def test_status_follows_the_clock(today: date, state: CoverState) -> None:
    assert cover_status(END, today) == CoverStatus(state, END)


def test_a_policy_passes_through_each_state_in_order() -> None:
    today = date(2025, 1, 1)
    seen: list[CoverState] = []
    while today <= END + timedelta(days=2):
        state = cover_status(END, today).state
        if not seen or seen[-1] != state:
            seen.append(state)
        today += timedelta(days=1)
    assert seen == [CoverState.covered, CoverState.expiring, CoverState.lapsed]


def test_the_window_is_configurable() -> None:
    today = date(2026, 1, 1)
    end = today + timedelta(days=60)
    assert cover_status(end, today).state == CoverState.covered
    assert cover_status(end, today, window_days=60).state == CoverState.expiring
    assert cover_status(end, today, window_days=59).state == CoverState.covered
    assert cover_status(today, today, window_days=0).state == CoverState.expiring
    assert cover_status(today + timedelta(days=1), today, window_days=0).state == (
        CoverState.covered
    )


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_days must not be negative"):
        cover_status(END, END, window_days=-1)


def test_no_confirmation_is_unknown() -> None:
    assert cover_status(None, END) == CoverStatus(CoverState.unknown, None)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"period_end": "2026-03-31", "period_start": "2025-04-01"}, END),
        (None, None),
        ({}, None),
        ({"period_start": "2025-04-01"}, None),
        ({"period_end": None}, None),
        ({"period_end": 20260331}, None),
        ({"period_end": "not a date"}, None),
    ],
)
def test_period_end_is_read_from_a_pi_cover_submission(
    answers: dict[str, Any] | None, expected: date | None
) -> None:
    assert period_end_of(answers) == expected
