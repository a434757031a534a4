"""Job schedules as Dkron 4 parses them: cron, descriptors, Go durations, RFC3339 times.

Mirrors Dkron's ``extcron`` parser over robfig/cron v3 (6 fields, seconds
first; ``~`` hashed from the job name; ``@every``, ``@at``, ``@minutely``,
``@manually``), so a schedule Dkron would refuse fails the preview instead.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = [
    "ALLOWED_SCHEDULES",
    "check_schedule",
    "check_zone",
    "every_seconds",
    "go_duration_seconds",
    "next_due",
    "parse_rfc3339",
]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# Handled by robfig/cron (so they also take a TZ= prefix).
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Handled by Dkron before robfig sees the spec: exact matches only, no TZ= prefix.
_DKRON_DESCRIPTORS = ("@minutely", "@manually")
ALLOWED_SCHEDULES = (
    "6-field cron with seconds first ('0 30 2 * * *'), "
    f"{', '.join(_CRON_DESCRIPTORS + _DKRON_DESCRIPTORS)}, "
    "'@every <duration>' ('@every 1m30s'), '@at <RFC3339 time>', "
    "optionally prefixed by 'TZ=<zone> ' or 'CRON_TZ=<zone> '"
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: Mapping[str, int] | None = None

    def allowed(self) -> str:
        text = f"{self.low}-{self.high}"
        if self.names:
            names = list(self.names)
            text += f" or {names[0].upper()}-{names[-1].upper()}"
        return text


_FIELDS = (
    _CronField("seconds", 0, 59),
    _CronField("minutes", 0, 59),
    _CronField("hours", 0, 23),
    _CronField("day-of-month", 1, 31),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 0, 6, _WEEKDAYS),
)


def check_schedule(schedule: str, job_name: str) -> None:
    """Raise ValueError unless Dkron 4 accepts ``schedule`` for job ``job_name``.

    ``~`` is replaced the way Dkron does it (a value derived from the job's
    name, per field) before the fields are checked, so a hash that lands out
    of range here would also be refused by Dkron.
    """
    if schedule != schedule.strip():
        raise ValueError("must not start or end with spaces")
    if schedule in _DKRON_DESCRIPTORS:
        return
    if schedule.startswith("@at "):
        try:
            parse_rfc3339(schedule.removeprefix("@at "))
        except ValueError as err:
            raise ValueError(
                f"'@at' needs an RFC3339 time such as '@at 2030-01-31T23:00:00Z': {err}"
            ) from None
        return
    spec = _hashed(schedule, job_name)
    zone_prefix = re.match(r"^(?:CRON_TZ|TZ)=(\S*) +", spec)
    if zone_prefix:
        check_zone(zone_prefix.group(1), "the TZ= prefix")
        spec = spec[zone_prefix.end() :]
        if spec in _DKRON_DESCRIPTORS or spec.startswith("@at "):
            raise ValueError(
                f"Dkron does not take a TZ= prefix before {spec.split()[0]}; set the job's timezone instead"
            )
    if spec.startswith("@"):
        _check_descriptor(spec)
        return
    fields = spec.split()
    if len(fields) == len(_FIELDS) - 1:
        cron_part = schedule[zone_prefix.end() :] if zone_prefix else schedule
        prefix = schedule[: zone_prefix.end()] if zone_prefix else ""
        names = " ".join(field.name for field in _FIELDS)
        raise ValueError(
            f"is a 5-field cron expression, but Dkron expects 6 fields with seconds first ({names});"
            f" the 6-field equivalent is {prefix + '0 ' + cron_part!r}"
        )
    if len(fields) != len(_FIELDS):
        raise ValueError(f"has {len(fields)} fields; allowed: {ALLOWED_SCHEDULES}")
    try:
        for field, text in zip(_FIELDS, fields, strict=True):
            _check_cron_field(field, text)
    except ValueError as err:
        if spec != schedule:
            raise ValueError(
                f"{err} (after Dkron replaced '~' with values derived from the job name)"
            ) from None
        raise


def _hashed(schedule: str, job_name: str) -> str:
    """Dkron's ``scheduleHash``: each ``~`` becomes a value derived from the name."""
    if "~" not in schedule:
        return schedule
    name_hash = sum(ord(char) for char in job_name)
    parts = schedule.split(" ")
    index = 0
    for position, part in enumerate(parts):
        if part.startswith("@"):
            return schedule
        if part.startswith(("TZ=", "CRON_TZ=")):
            continue
        if "~" in part:
            value = {
                2: name_hash % 24,
                3: name_hash % 28 + 1,
                4: name_hash % 12 + 1,
                5: name_hash % 7,
            }.get(index, name_hash % 60)
            parts[position] = part.replace("~", str(value))
        index += 1
    return " ".join(parts)


def _check_descriptor(spec: str) -> None:
    if spec in _CRON_DESCRIPTORS:
        return
    if spec.startswith("@every "):
        duration = spec.removeprefix("@every ")
        seconds = go_duration_seconds(duration)
        if seconds is None:
            raise ValueError(f"'@every' needs a Go duration such as 30s, 1m30s or 2h, not {duration!r}")
        if seconds < 1:
            raise ValueError("'@every' needs a duration of at least 1s (Dkron rounds shorter ones up to 1s)")
        return
    raise ValueError(f"unknown descriptor {spec.split()[0]!r}; allowed: {ALLOWED_SCHEDULES}")


def _check_cron_field(field: _CronField, text: str) -> None:
    """One cron field as robfig/cron parses it: lists of ranges with steps."""
    for item in text.split(","):
        problem = _cron_item_problem(field, item)
        if problem:
            raise ValueError(
                f"{field.name} field {text!r}: {problem}; allowed: {field.allowed()}, '*', '?', '~',"
                " lists (a,b), ranges (a-b) and steps (*/n, a-b/n)"
            )


def _cron_item_problem(field: _CronField, item: str) -> str | None:
    range_text, _, step_text = item.partition("/")
    if "/" in step_text:
        return f"{item!r} has more than one '/'"
    if range_text in ("*", "?"):
        low, high = field.low, field.high
    else:
        bounds = range_text.split("-")
        if len(bounds) > 2:
            return f"{item!r} has more than one '-'"
        values = [value for value in (_cron_value(field, bound) for bound in bounds) if value is not None]
        if len(values) != len(bounds):
            return f"{item!r} is not a number or name"
        low, high = values[0], values[-1]
        if step_text and len(bounds) == 1:
            high = field.high  # robfig: "a/n" means a-max/n
        if low < field.low or high > field.high:
            return f"{item!r} is out of range"
        if low > high:
            return f"{item!r} starts after it ends"
    if step_text and (not step_text.isdigit() or int(step_text) == 0):
        return f"{item!r} needs a positive whole step"
    return None


def _cron_value(field: _CronField, text: str) -> int | None:
    if field.names and text.lower() in field.names:
        return field.names[text.lower()]
    return int(text) if text.isdigit() else None


def go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration without sign ('1m30s', '2h', '0'); None if invalid."""
    if text == "0":
        return 0.0
    total, position = 0.0, 0
    for match in _GO_DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_DURATION_UNITS_S[match.group(2)]
        position = match.end()
    return total if position == len(text) and text else None


def parse_rfc3339(text: str) -> datetime:
    """An RFC3339 time as Go's time.RFC3339 parses it (offset or Z required)."""
    if not _RFC3339.match(text):
        raise ValueError(
            "must be an RFC3339 time with a zone, e.g. 2030-01-31T23:00:00Z or 2030-01-31T23:00:00+02:00"
        )
    return datetime.fromisoformat(text)


def check_zone(zone: str, what: str) -> None:
    if zone in ("UTC", "Local"):
        return
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{what} {zone!r} is not a known time zone; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


# --- when a schedule falls due (the catch-up watcher's question) ---------------------------

# Dkron's descriptors as the 6-field cron robfig/cron expands them to.
_DESCRIPTOR_CRON = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
    "@minutely": "0 * * * * *",
}


def every_seconds(schedule: str) -> float | None:
    """The interval of an ``@every`` schedule (Dkron rounds it up to 1 s); None for other forms."""
    if not schedule.startswith("@every "):
        return None
    seconds = go_duration_seconds(schedule.removeprefix("@every "))
    return None if seconds is None else max(seconds, 1.0)


def next_due(schedule: str, job_name: str, after: datetime, timezone: str = "") -> datetime | None:
    """The first time after ``after`` (aware) at which ``schedule`` falls due, as Dkron computes it.

    Cron and descriptors are read in the schedule's ``TZ=`` zone, else the
    job's ``timezone``, else UTC. ``@every`` counts from ``after`` (Dkron
    counts it from when the leader scheduled the job); ``@at`` is its time if
    still ahead; ``@manually`` never falls due. None when nothing is due
    within five years.
    """
    if schedule == "@manually":
        return None
    if schedule.startswith("@at "):
        at = parse_rfc3339(schedule.removeprefix("@at "))
        return at if at > after else None
    every = every_seconds(schedule)
    if every is not None:
        return after.replace(microsecond=0) + timedelta(seconds=every)
    spec = _hashed(schedule, job_name)
    zone_prefix = re.match(r"^(?:CRON_TZ|TZ)=(\S*) +", spec)
    if zone_prefix:
        timezone, spec = zone_prefix.group(1), spec[zone_prefix.end() :]
    spec = _DESCRIPTOR_CRON.get(spec, spec)
    zone = _zone(timezone)
    sets = [_field_values(field, text) for field, text in zip(_FIELDS, spec.split(), strict=True)]
    seconds, minutes, hours, (days, day_star), months, (weekdays, weekday_star) = sets

    def day_matches(day: datetime) -> bool:
        in_month, in_week = day.day in days, day.isoweekday() % 7 in weekdays
        return in_month and in_week if day_star or weekday_star else in_month or in_week

    # Walk the wall clock in the job's zone, skipping whole months, days, hours and minutes that cannot match.
    wall = after.astimezone(zone).replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
    last_year = wall.year + 5
    while wall.year <= last_year:
        if wall.month not in months[0]:
            wall = datetime(wall.year + wall.month // 12, wall.month % 12 + 1, 1)
        elif not day_matches(wall):
            wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
        elif wall.hour not in hours[0]:
            wall = wall.replace(minute=0, second=0) + timedelta(hours=1)
        elif wall.minute not in minutes[0]:
            wall = wall.replace(second=0) + timedelta(minutes=1)
        elif wall.second not in seconds[0]:
            wall += timedelta(seconds=1)
        else:
            due = wall.replace(tzinfo=zone)
            if due > after:
                return due
            wall += timedelta(seconds=1)  # a wall time repeated when the clocks went back
    return None


def _zone(name: str) -> tzinfo:
    return UTC if name in ("", "UTC", "Local") else zoneinfo.ZoneInfo(name)


def _field_values(field: _CronField, text: str) -> tuple[frozenset[int], bool]:
    """The values one cron field allows, and whether it is a star (robfig's day rule needs that)."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        range_text, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if range_text in ("*", "?"):
            low, high = field.low, field.high
            star = star or step == 1
        else:
            bounds = [_cron_value(field, bound) for bound in range_text.split("-")]
            if None in bounds:
                raise ValueError(f"{field.name} field {text!r} is not valid cron")
            low, high = int(bounds[0] or 0), int(bounds[-1] or 0)
            if step_text and len(bounds) == 1:
                high = field.high
        values.update(range(low, high + 1, step))
    return frozenset(values), star
