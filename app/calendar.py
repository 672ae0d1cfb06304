"""The firms' calendar: the days people enter (due dates, the periods of cover) are days in
London, where our firms are regulated and their policies run; instants stay in UTC.

A policy that ends on 30 June has ended at 00:30 on 1 July in London, though it is still
30 June in UTC until 01:00 there (British Summer Time): judged on UTC days, it would show as in
force for that hour, and a due date of today would be refused as passed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/London")


def now() -> datetime:
    """The clock (tests replace it)."""
    return datetime.now(UTC)


def today() -> date:
    """The day it is in London."""
    return now().astimezone(ZONE).date()


def end_of(day: date) -> datetime:
    """The last instant of ``day`` in London, in UTC."""
    midnight = datetime.combine(day + timedelta(days=1), time.min, ZONE)
    return midnight.astimezone(UTC) - timedelta(microseconds=1)
