"""The firms' calendar: days are London's, across both changes of the clocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app import calendar
from app.config import Settings
from app.declarations import links


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        # British Summer Time: London's day begins at 23:00 UTC the evening before.
        (datetime(2026, 6, 30, 22, 59, tzinfo=UTC), date(2026, 6, 30)),
        (datetime(2026, 6, 30, 23, 0, tzinfo=UTC), date(2026, 7, 1)),
        # Greenwich Mean Time: the two agree.
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), date(2026, 12, 31)),
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), date(2027, 1, 1)),
    ],
)
def test_today_is_londons_day(
    monkeypatch: pytest.MonkeyPatch, instant: datetime, day: date
) -> None:
    monkeypatch.setattr(calendar, "now", lambda: instant)
    assert calendar.today() == day


@pytest.mark.parametrize(
    ("day", "last"),
    [
        (date(2026, 7, 1), datetime(2026, 7, 1, 22, 59, 59, 999999, tzinfo=UTC)),
        (date(2026, 12, 31), datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        # The clocks go forward in the night after 28 March 2026 and back after 24 October.
        (date(2026, 3, 28), datetime(2026, 3, 28, 23, 59, 59, 999999, tzinfo=UTC)),
        (date(2026, 3, 29), datetime(2026, 3, 29, 22, 59, 59, 999999, tzinfo=UTC)),
        (date(2026, 10, 24), datetime(2026, 10, 24, 22, 59, 59, 999999, tzinfo=UTC)),
        (date(2026, 10, 25), datetime(2026, 10, 25, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_a_day_ends_at_londons_midnight(day: date, last: datetime) -> None:
    assert calendar.end_of(day) == last
    assert calendar.end_of(day).tzinfo == UTC
    after = last + timedelta(microseconds=1)
    assert after.astimezone(calendar.ZONE).date() == day + timedelta(days=1)


def test_a_link_lasts_to_the_end_of_the_due_day_plus_grace_in_london() -> None:
    settings = Settings.model_construct(declaration_token_days=14, declaration_grace_days=7)
    made = datetime(2027, 6, 20, 12, tzinfo=UTC)
    expires = links.expiry(settings, date(2027, 6, 24), 30, made)
    # 1 July 2027 ends at 23:00 UTC (summer time), not at midnight UTC.
    assert expires == datetime(2027, 7, 1, 22, 59, 59, 999999, tzinfo=UTC)
    assert links.expiry(settings, date(2027, 8, 1), 5, made) == made + timedelta(days=5)
