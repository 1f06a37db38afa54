"""Cron schedules as upstream's CronJobs read them (robfig/cron's standard parser).

Five fields (minute hour day-of-month month day-of-week) of comma-separated ranges:
`*`, `?`, `N`, `N-M`, each with an optional `/step` (`N/step` runs from N to the field's
maximum), month and weekday names (JAN-DEC, SUN-SAT); or a descriptor: @yearly,
@annually, @monthly, @weekly, @daily, @midnight, @hourly, `@every <duration>`. When both
day fields are restricted a day matching either runs (cron's OR rule); a `*` or `?` in one
leaves the other alone to decide. Times are wall-clock times of the schedule's zone: a
time a DST jump skips does not run, a repeated one runs once.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from k8slite.component.flags import Duration

UTC = dt.UTC
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# How far ahead (or back) a schedule is searched: "0 0 30 2 *" never runs.
_SEARCH_DAYS = 366 * 5


class ScheduleError(ValueError):
    """A schedule the standard parser refuses (the message is robfig/cron's)."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Bounds(0, 59, {}),
    _Bounds(0, 23, {}),
    _Bounds(1, 31, {}),
    _Bounds(1, 12, _MONTHS),
    _Bounds(0, 6, _DAYS),
)


def _number(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    try:
        value = int(text, 10)
    except ValueError:
        raise ScheduleError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        ) from None
    if value < 0:
        raise ScheduleError(f"negative number ({value}) not allowed: {text}")
    return value


def _parse_range(expr: str, b: _Bounds) -> tuple[set[int], bool]:
    """The values of one range and whether it is a bare star (robfig's starBit)."""
    range_and_step = expr.split("/")
    if len(range_and_step) > 2:
        raise ScheduleError(f"too many slashes: {expr}")
    low_and_high = range_and_step[0].split("-")
    if len(low_and_high) > 2:
        raise ScheduleError(f"too many hyphens: {expr}")
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = b.low, b.high, True
    else:
        start = _number(low_and_high[0], b.names)
        end = _number(low_and_high[1], b.names) if len(low_and_high) == 2 else start
    step = 1
    if len(range_and_step) == 2:
        step = _number(range_and_step[1], {})
        if len(low_and_high) == 1 and not star:
            end = b.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    if start < b.low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise ScheduleError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _parse_field(text: str, b: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        got, is_star = _parse_range(part, b)
        values |= got
        star = star or is_star
    return frozenset(values), star


class Schedule(abc.ABC):
    """When a parsed schedule runs, in its time zone."""

    @abc.abstractmethod
    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first run strictly after `after` (None if there is none within 5 years)."""

    @abc.abstractmethod
    def most_recent(self, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The last run in (after, now], if any."""


@dataclass(frozen=True)
class _Every(Schedule):
    """`@every <duration>`: runs every so often from whenever it was last looked at."""

    seconds: int

    def next(self, after: dt.datetime) -> dt.datetime | None:
        return after.replace(microsecond=0) + dt.timedelta(seconds=self.seconds)

    def most_recent(self, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        first = self.next(after)
        if first is None or first > now:
            return None
        steps = int((now - first).total_seconds()) // self.seconds
        return first + dt.timedelta(seconds=steps * self.seconds)


@dataclass(frozen=True)
class _Cron(Schedule):
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool
    zone: dt.tzinfo

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def _aware(self, wall: dt.datetime) -> dt.datetime | None:
        """The instant of a wall-clock time, None if a DST jump skips it."""
        aware = wall.replace(tzinfo=self.zone)
        if aware.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != wall:
            return None
        return aware

    def next(self, after: dt.datetime) -> dt.datetime | None:
        local = after.astimezone(self.zone).replace(tzinfo=None)
        start = local.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = dt.datetime.combine(day, dt.time(hour, minute))
                        if wall < start:
                            continue
                        aware = self._aware(wall)
                        if aware is not None and aware > after:
                            return aware
            day += dt.timedelta(days=1)
        return None

    def most_recent(self, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        local = now.astimezone(self.zone).replace(tzinfo=None)
        day = local.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        wall = dt.datetime.combine(day, dt.time(hour, minute))
                        if wall > local:
                            continue
                        aware = self._aware(wall)
                        if aware is None or aware > now:
                            continue
                        return aware if aware > after else None
            day -= dt.timedelta(days=1)
            if dt.datetime.combine(day, dt.time(23, 59)).replace(tzinfo=self.zone) <= after:
                return None
        return None


def zone_problem(zone: str) -> str | None:
    """Why a timeZone is refused, as upstream words it; None if it loads."""
    if not zone:
        return "timeZone must be nil or non-empty string"
    if zone.lower() == "local":
        return (
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {zone}"
    return None


def parse(spec: str, zone: str | None = None) -> Schedule:
    """Parse a standard schedule; times are in `zone` (an IANA name), else UTC."""
    tz: dt.tzinfo = ZoneInfo(zone) if zone else UTC
    text = spec.strip()
    if not text:
        raise ScheduleError("empty spec string")
    if text.startswith("@"):
        if text.startswith("@every "):
            try:
                seconds = Duration.parse(text[len("@every ") :].strip()).seconds
            except ValueError as e:
                raise ScheduleError(f"failed to parse duration {text}: {e}") from None
            return _Every(max(1, int(seconds)))
        if text not in _DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        listed = "[" + " ".join(fields) + "]"
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {listed}")
    parsed = [_parse_field(f, b) for f, b in zip(fields, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, weekday_star) = parsed
    return _Cron(
        tuple(sorted(minutes)),
        tuple(sorted(hours)),
        days,
        months,
        weekdays,
        day_star,
        weekday_star,
        tz,
    )


def count_runs(schedule: Schedule, after: dt.datetime, now: dt.datetime, limit: int) -> int:
    """How many runs fall in (after, now], counting no further than limit."""
    count = 0
    t = schedule.next(after)
    while t is not None and t <= now and count < limit:
        count += 1
        t = schedule.next(t)
    return count
