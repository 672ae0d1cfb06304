"""A counterparty's professional indemnity cover status, from its confirmations.

Pure functions of dates: the caller passes ``today`` (the clock is injected), so status moves
from covered to expiring to lapsed as days pass without anything being stored or rewritten.
The newest confirmation speaks for the cover, but a renewal confirmed ahead of its start does
not end the policy still in force: the cover runs on into it if they leave no gap (so the
counterparty is not expiring). A policy confirmed ahead with none ever in force is not yet in
force; after a policy that has ended, it leaves the cover lapsed until it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

DEFAULT_WINDOW_DAYS = 30
PERIOD_END = "period_end"  # the pi_cover built-in's question id for the policy end date
PERIOD_START = "period_start"
COVERS_ALL = "covers_our_activities"


class CoverState(StrEnum):
    covered = "covered"
    expiring = "expiring"
    lapsed = "lapsed"
    not_yet_in_force = "not_yet_in_force"
    unknown = "unknown"


@dataclass(frozen=True)
class CoverStatus:
    """The state of cover and, when known, the last day it is in force; whether the policy in
    force says it covers everything the counterparty does for the firm (None when no policy is
    in force, or it does not say); and, for cover not yet in force, the day it starts, or for
    cover expiring or lapsed, the day a renewal confirmed ahead starts after a gap."""

    state: CoverState
    until: date | None
    covers_all_activities: bool | None = None
    starts_on: date | None = None


@dataclass(frozen=True)
class ConfirmedPolicy:
    """One confirmed policy period, as a submitted confirmation gives it."""

    start: date | None
    end: date
    covers_all_activities: bool | None


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
    return _date(answers.get(PERIOD_END)) if answers else None


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def policy_of(answers: dict[str, Any] | None) -> ConfirmedPolicy | None:
    """The policy a submitted pi_cover confirmation gives, or None if it gives no usable one:
    no end date, or one before its start (evidence of nothing)."""
    end = period_end_of(answers)
    if answers is None or end is None:
        return None
    start = _date(answers.get(PERIOD_START))
    if start is not None and start > end:
        return None
    covers = answers.get(COVERS_ALL)
    return ConfirmedPolicy(start, end, covers if isinstance(covers, bool) else None)


def cover_from(
    policies: list[ConfirmedPolicy], today: date, window_days: int = DEFAULT_WINDOW_DAYS
) -> CoverStatus:
    """Cover status on ``today`` from the confirmed policies, newest confirmation first. The
    newest speaks for the cover (a correction, or a policy cut short, replaces what came
    before), except that a renewal confirmed ahead of its start leaves the policy before it in
    force until then; with none begun, the cover is not yet in force, from the earliest start to
    come, and a lapse names that start too. The cover runs on through confirmed renewals that
    leave no gap."""
    # A confirmation of a policy that a newer one confirms again (the same start: corrected, or
    # cut short) no longer speaks for it, not even as a renewal the cover runs on into.
    policies = [
        p
        for i, p in enumerate(policies)
        if p.start is None or all(q.start != p.start for q in policies[:i])
    ]
    if not policies:
        return cover_status(None, today, window_days)
    newest = policies[0]
    coming = [p.start for p in policies if p.start is not None and p.start > today]
    # The newest word on what is in force today: the newest confirmation, or, when that is a
    # renewal not yet begun, the newest begun before it (a policy cut short, confirmed after
    # the one it cuts, speaks for it).
    current = newest
    if not _begun(newest, today):
        begun = next((p for p in policies[1:] if _begun(p, today) and _before(p, newest)), None)
        if begun is None:
            return CoverStatus(CoverState.not_yet_in_force, None, starts_on=min(coming))
        current = begun
    until, in_force = _continued(current, policies, today)
    status = cover_status(until, today, window_days)
    # A renewal confirmed ahead that leaves a gap: cover ending soon, or ended, is expiring or
    # lapsed all the same (the firm must see the gap), and says when the cover comes back.
    renewal = min((start for start in coming if start > until), default=None)
    if status.state is CoverState.lapsed:
        return replace(status, starts_on=renewal)
    if status.state is not CoverState.covered and status.state is not CoverState.expiring:
        return status
    # Said of the policy in force today: a renewal the cover has run on into, not the one
    # (confirmed later, perhaps) that it ran on from.
    expiring = status.state is CoverState.expiring
    return replace(
        status,
        covers_all_activities=in_force.covers_all_activities,
        starts_on=renewal if expiring else None,
    )


def _begun(policy: ConfirmedPolicy, today: date) -> bool:
    return policy.start is None or policy.start <= today


def _before(policy: ConfirmedPolicy, renewal: ConfirmedPolicy) -> bool:
    """Whether ``policy`` began before ``renewal`` does (one without a start, always)."""
    return policy.start is None or (renewal.start is not None and policy.start < renewal.start)


def _continued(
    current: ConfirmedPolicy, policies: list[ConfirmedPolicy], today: date
) -> tuple[date, ConfirmedPolicy]:
    """The end of ``current``, carried on through confirmed renewals that start no later than
    the day after cover ends, and the policy of that run in force ``today`` (the last begun).

    A renewal begins after ``current`` does. One confirmed after it may begin before it ends (a
    mid-term replacement); one confirmed before it must begin no earlier than its last day,
    or ``current``, the newer confirmation, is a correction of it, and speaks for its period:
    a policy corrected to start and end earlier was otherwise carried on to the end it had."""
    newer = policies[: policies.index(current)]
    renewals = [
        (p.start, p)
        for p in policies
        if p.start is not None and _before(current, p) and (p in newer or p.start >= current.end)
    ]
    until, run, extended = current.end, [current], True
    while extended:
        extended = False
        for start, renewal in renewals:
            if start <= until + timedelta(days=1) and renewal.end > until:
                until, extended = renewal.end, True
                run.append(renewal)
    in_force = [p for p in run if _begun(p, today) and p.end >= today]
    return until, max(in_force, key=lambda p: p.start or date.min, default=current)
