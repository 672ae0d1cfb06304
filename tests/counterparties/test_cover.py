"""Cover status moves from covered to expiring to lapsed as the injected clock advances."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from app.counterparties.cover import (
    ConfirmedPolicy,
    CoverState,
    CoverStatus,
    cover_from,
    cover_status,
    period_end_of,
    policy_of,
)
from app.evidence.collect import _cover_words

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


# ---- from every confirmation, newest first ------------------------------------------------------

THIS_YEAR = ConfirmedPolicy(date(2025, 4, 1), END, True)
NEXT_YEAR = ConfirmedPolicy(END + timedelta(days=1), date(2027, 3, 31), True)


def test_a_renewal_confirmed_ahead_keeps_the_cover_running_into_it() -> None:
    """Next year's policy, confirmed before this one ends, leaves this one in force until then
    and the cover is not expiring: it runs on to the renewal's end."""
    today = END - timedelta(days=10)
    assert cover_from([NEXT_YEAR, THIS_YEAR], today) == CoverStatus(
        CoverState.covered, date(2027, 3, 31), True
    )
    # Renewed with a gap: this policy's end is the end of cover, and it is expiring, naming the
    # day the renewal starts (it said nothing of it, as if none were confirmed).
    gap = ConfirmedPolicy(END + timedelta(days=3), date(2027, 3, 31), True)
    assert cover_from([gap, THIS_YEAR], today) == CoverStatus(
        CoverState.expiring, END, True, starts_on=gap.start
    )
    # The renewal in force: it speaks for itself.
    assert cover_from([NEXT_YEAR, THIS_YEAR], END + timedelta(days=1)).until == date(2027, 3, 31)


def test_a_renewal_that_overlaps_or_hands_over_on_the_day_keeps_the_cover_running() -> None:
    """A renewal starting on or before the current policy's last day (a same-day handover, or
    a mid-term replacement) leaves the current one in force until then, not NOT_YET_IN_FORCE."""
    today = END - timedelta(days=10)
    for start in (END, END - timedelta(days=5)):
        renewal = ConfirmedPolicy(start, date(2027, 3, 31), None)
        assert cover_from([renewal, THIS_YEAR], today) == CoverStatus(
            CoverState.covered, date(2027, 3, 31), True
        ), start


def test_the_cover_runs_on_through_every_renewal_confirmed_and_starts_at_the_first() -> None:
    after_next = ConfirmedPolicy(date(2027, 4, 1), date(2028, 3, 31), True)
    today = END - timedelta(days=10)
    assert cover_from([after_next, NEXT_YEAR, THIS_YEAR], today).until == date(2028, 3, 31)
    # Two confirmed ahead, none in force: not yet in force, from the earlier start.
    assert cover_from([after_next, NEXT_YEAR], today) == CoverStatus(
        CoverState.not_yet_in_force, None, starts_on=NEXT_YEAR.start
    )


def test_a_policy_confirmed_ahead_with_none_in_force_is_not_yet_in_force() -> None:
    today = END - timedelta(days=10)
    assert cover_from([NEXT_YEAR], today) == CoverStatus(
        CoverState.not_yet_in_force, None, starts_on=NEXT_YEAR.start
    )


def test_a_lapse_shows_even_with_a_renewal_confirmed_ahead() -> None:
    """Cover that ended before a renewal confirmed ahead starts has a gap: the counterparty is
    uncovered, so LAPSED (since the day it ended), naming the day the renewal starts. It read
    NOT_YET_IN_FORCE, as if it had never been covered, the lapse hidden."""
    today = END - timedelta(days=10)
    lapsed = ConfirmedPolicy(date(2024, 4, 1), date(2025, 3, 31), True)
    expected = CoverStatus(CoverState.lapsed, lapsed.end, starts_on=NEXT_YEAR.start)
    assert cover_from([NEXT_YEAR, lapsed], today) == expected
    # The same whichever was confirmed first.
    assert cover_from([lapsed, NEXT_YEAR], today) == expected
    # With nothing confirmed ahead, a lapse names no start.
    assert cover_from([lapsed], today) == CoverStatus(CoverState.lapsed, lapsed.end)


def test_the_newest_confirmation_replaces_what_came_before() -> None:
    """A correction, or a policy cut short, is confirmed again: the newest end stands, even an
    earlier one."""
    cut_short = ConfirmedPolicy(date(2025, 4, 1), date(2025, 12, 31), True)
    assert cover_from([cut_short, THIS_YEAR], date(2026, 1, 5)) == CoverStatus(
        CoverState.lapsed, date(2025, 12, 31)
    )


def test_a_renewal_confirmed_ahead_does_not_bring_back_a_policy_since_cut_short() -> None:
    """This year's policy, then the same cut short at the end of May, then next year's renewal
    confirmed ahead of its start: on 1 September nothing is in force, as without the renewal.
    The renewal made the older confirmation of this year's policy speak again, and showed the
    counterparty (and the packs) covered until the renewal's end, the gap hidden."""
    this_year = ConfirmedPolicy(date(2025, 1, 1), date(2025, 12, 31), True)
    cut_short = ConfirmedPolicy(date(2025, 1, 1), date(2025, 5, 31), True)
    renewal = ConfirmedPolicy(date(2026, 1, 1), date(2026, 12, 31), True)
    today = date(2025, 9, 1)
    assert cover_from([cut_short, this_year], today).state == CoverState.lapsed
    assert cover_from([renewal, cut_short, this_year], today) == CoverStatus(
        CoverState.lapsed, cut_short.end, starts_on=renewal.start
    )
    # Before the cut, the renewal leaves it in force; one confirmed ahead to run on from the
    # cut, the cover runs on into.
    assert cover_from([renewal, cut_short, this_year], date(2025, 5, 1)).until == date(2025, 5, 31)
    next_day = ConfirmedPolicy(date(2025, 6, 1), date(2026, 5, 31), True)
    assert cover_from([next_day, cut_short, this_year], date(2025, 5, 20)).until == date(
        2026, 5, 31
    )


def test_a_renewal_cut_short_before_it_begins_speaks_for_its_end() -> None:
    """Next year's policy confirmed ahead, then confirmed again cut short before it begins: the
    cover runs on into it to its new end, not to the end it was first confirmed with."""
    this_year = ConfirmedPolicy(date(2025, 1, 1), date(2025, 12, 31), True)
    renewal = ConfirmedPolicy(date(2026, 1, 1), date(2026, 12, 31), True)
    cut_short = ConfirmedPolicy(date(2026, 1, 1), date(2026, 3, 31), True)
    policies = [cut_short, renewal, this_year]
    assert cover_from(policies, date(2026, 1, 2)).until == date(2026, 3, 31)
    assert cover_from(policies, date(2025, 12, 20)).until == date(2026, 3, 31)
    cut_to_days = ConfirmedPolicy(date(2026, 1, 1), date(2026, 1, 10), True)
    status = cover_from([cut_to_days, renewal, this_year], date(2025, 12, 20))
    assert status == CoverStatus(CoverState.expiring, date(2026, 1, 10), True)


def test_a_correction_to_an_earlier_period_is_not_carried_on_by_what_it_corrects() -> None:
    """Confirmed 15 January to 14 January, then corrected to the calendar year: the older
    confirmation begins after the correction does, but is no renewal of it (it began before
    the correction's last day), so the cover ends with the correction."""
    first = ConfirmedPolicy(date(2025, 1, 15), date(2026, 1, 14), True)
    corrected = ConfirmedPolicy(date(2025, 1, 1), date(2025, 12, 31), True)
    assert cover_from([corrected, first], date(2026, 1, 5)) == CoverStatus(
        CoverState.lapsed, date(2025, 12, 31)
    )
    # Confirmed the other way round, the newer speaks for the cover, as before.
    assert cover_from([first, corrected], date(2026, 1, 5)).until == date(2026, 1, 14)


def test_exclusions_are_said_of_the_policy_in_force_today() -> None:
    """This year's policy, with exclusions, confirmed first; last year's, covering every
    activity, confirmed late: the cover runs from last year's into this year's, and says this
    year's exclusions, not last year's."""
    last_year = ConfirmedPolicy(date(2025, 1, 1), date(2025, 12, 31), True)
    this_year = ConfirmedPolicy(date(2026, 1, 1), date(2026, 12, 31), False)
    assert cover_from([last_year, this_year], date(2026, 2, 1)) == CoverStatus(
        CoverState.covered, date(2026, 12, 31), False
    )
    assert cover_from([last_year, this_year], date(2025, 6, 1)).covers_all_activities is True


def test_exclusions_are_said_while_the_policy_is_in_force() -> None:
    partial = ConfirmedPolicy(date(2025, 4, 1), END, False)
    assert cover_from([partial], date(2025, 6, 1)) == CoverStatus(CoverState.covered, END, False)
    assert cover_from([partial], END + timedelta(days=1)).covers_all_activities is None
    unsaid = ConfirmedPolicy(date(2025, 4, 1), END, None)
    assert cover_from([unsaid], date(2025, 6, 1)).covers_all_activities is None
    assert cover_from([], date(2025, 6, 1)) == CoverStatus(CoverState.unknown, None)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (
            {
                "period_start": "2025-04-01",
                "period_end": "2026-03-31",
                "covers_our_activities": True,
            },
            THIS_YEAR,
        ),
        ({"period_end": "2026-03-31"}, ConfirmedPolicy(None, END, None)),
        ({"period_start": "2026-04-01", "period_end": "2026-03-31"}, None),  # ends before it starts
        ({"period_start": "2025-04-01"}, None),
        (None, None),
    ],
)
def test_a_policy_is_read_from_a_pi_cover_submission(
    answers: dict[str, Any] | None, expected: ConfirmedPolicy | None
) -> None:
    assert policy_of(answers) == expected


def test_a_pack_names_a_lapse_and_the_renewal_that_ends_it() -> None:
    """The regulator's pack prints the state with what qualifies it: a lapse with a renewal
    ahead says when the renewal starts, and cover yet to come when it starts."""
    start = date(2026, 7, 1)
    lapsed = CoverStatus(CoverState.lapsed, date(2026, 5, 31), starts_on=start)
    assert _cover_words(lapsed) == "lapsed (renewal starts 2026-07-01)"
    assert _cover_words(CoverStatus(CoverState.lapsed, date(2026, 5, 31))) == "lapsed"
    expiring = CoverStatus(CoverState.expiring, date(2026, 6, 20), True, starts_on=start)
    assert _cover_words(expiring) == "expiring (renewal starts 2026-07-01)"
    coming = CoverStatus(CoverState.not_yet_in_force, None, starts_on=start)
    assert _cover_words(coming) == "not yet in force (starts 2026-07-01)"
