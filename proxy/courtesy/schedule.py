"""A district's windows and pauses in its own time zone: pure functions of the time given.

docs/configuration.md "SIS courtesy". ``windows`` say how many connections a district takes
at which hours of which weekdays (``max_connections`` inside the window, the district's own
outside every window); ``pauses`` are inclusive date ranges, in the district's zone, during
which nothing is sent to it. Nothing here reads a clock: callers pass ``now`` (an aware
datetime), so tests inject the time and the change feed's walk asks about any moment.

The parsers raise ``ValueError`` with the words ``config validate`` shows after the key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A pause starting within this many days is a warning of ``check``'s ``not_paused``.
PAUSE_WARNING = timedelta(days=30)
_TIME_RE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class Courteous(Protocol):
    """What these functions read of a district (``proxy.config.DistrictConfig`` has it)."""

    @property
    def timezone(self) -> str: ...
    @property
    def windows(self) -> tuple[Window, ...]: ...
    @property
    def pauses(self) -> tuple[Pause, ...]: ...
    @property
    def max_connections(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays (0 = Monday) and minutes since local midnight ``[start, end)``."""

    days: frozenset[int]
    start: int
    end: int
    max_connections: int
    days_text: str

    def holds(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start <= minute < self.end

    def as_table(self) -> dict[str, Any]:
        """As a config file writes it (what ``parse_window`` reads)."""
        return {
            "days": self.days_text,
            "from": _clock_text(self.start),
            "to": _clock_text(self.end),
            "max_connections": self.max_connections,
        }

    def describe(self) -> str:
        return (
            f"{self.days_text} {_clock_text(self.start)}-{_clock_text(self.end)}: "
            f"{self.max_connections} at once"
        )


@dataclass(frozen=True, slots=True)
class Pause:
    """Inclusive dates in the district's zone, and why."""

    start: date
    end: date
    reason: str

    def as_table(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "reason": self.reason}


# -- parsing ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (``UTC``, ``America/Chicago``); ValueError for an unknown one."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f'unknown time zone "{name}" (write an IANA name such as America/Chicago)'
        ) from None


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``mon-wed,fri``; a range may wrap (``fri-mon``)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('must be weekdays such as "mon-fri" or "sat,sun"')
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, sep, last = part.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise ValueError(f'unknown weekday in "{text}" (use mon, tue, ... sun)')
        a = DAYS.index(first)
        b = DAYS.index(last) if sep else a
        span = (b - a) % 7
        days.update((a + i) % 7 for i in range(span + 1))
    return frozenset(days)


def parse_clock(text: Any) -> int:
    """``07:00`` to minutes since midnight (``24:00`` is the end of the day)."""
    if isinstance(text, time):
        return text.hour * 60 + text.minute
    match = _TIME_RE.match(text) if isinstance(text, str) else None
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f'invalid time "{text}" (write HH:MM such as 07:00)')
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_date(value: Any) -> date:
    """A TOML date (``2027-06-20``) or its text."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f'invalid date "{value}" (write e.g. 2027-06-20)')


def parse_window(table: Any, problems: list[str], key: str) -> Window | None:
    """One ``windows`` entry; a problem per bad key (``key.to: ...``), None when any."""
    example = '{ days = "mon-fri", from = "07:00", to = "16:00", max_connections = 1 }'
    count = len(problems)
    if not _entry(table, problems, key, ("days", "from", "to", "max_connections"), example):
        return None
    days = _field(problems, f"{key}.days", table.get("days"), parse_days)
    start = _field(problems, f"{key}.from", table.get("from"), parse_clock)
    end = _field(problems, f"{key}.to", table.get("to"), parse_clock)
    cap = table.get("max_connections")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        problems.append(f"{key}.max_connections: must be an integer >= 1")
    if start is not None and end is not None and end <= start:
        problems.append(
            f"{key}.to: {_clock_text(end)} is not after from = {_clock_text(start)} "
            "(a window ends on the day it starts; split one across midnight in two)"
        )
    if len(problems) > count or days is None or start is None or end is None:
        return None
    assert isinstance(cap, int)
    return Window(days, start, end, cap, str(table["days"]).lower().replace(" ", ""))


def parse_pause(table: Any, problems: list[str], key: str) -> Pause | None:
    """One ``pauses`` entry; a problem per bad key, None when any."""
    example = '{ from = 2027-06-20, to = 2027-08-01, reason = "..." }'
    count = len(problems)
    if not _entry(table, problems, key, ("from", "to", "reason"), example):
        return None
    start = _field(problems, f"{key}.from", table.get("from"), parse_date)
    end = _field(problems, f"{key}.to", table.get("to"), parse_date)
    reason = table.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append(f'{key}.reason: required (what vendors are told, e.g. "summer rollover")')
    if start is not None and end is not None and end < start:
        problems.append(f"{key}.to: {end.isoformat()} is before from = {start.isoformat()}")
    if len(problems) > count or start is None or end is None:
        return None
    assert isinstance(reason, str)
    return Pause(start, end, reason.strip())


def overlaps(windows: Sequence[Window]) -> list[tuple[int, int]]:
    """Index pairs of windows that share a weekday and a minute."""
    found = []
    for i, a in enumerate(windows):
        for j in range(i + 1, len(windows)):
            b = windows[j]
            if a.days & b.days and a.start < b.end and b.start < a.end:
                found.append((i, j))
    return found


def _entry(table: Any, problems: list[str], key: str, keys: tuple[str, ...], example: str) -> bool:
    """Whether ``table`` is a table (a problem if not), with a problem per unknown key."""
    if not isinstance(table, Mapping):
        problems.append(f"{key}: must be a table such as {example}")
        return False
    problems.extend(f"{key}.{name}: unknown key" for name in table if name not in keys)
    return True


def _field(problems: list[str], key: str, value: Any, parse: Any) -> Any:
    if value is None:
        problems.append(f"{key}: required")
        return None
    try:
        return parse(value)
    except ValueError as exc:
        problems.append(f"{key}: {exc}")
        return None


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- questions about a moment -----------------------------------------------------------------


def local(district: Courteous, now: datetime) -> datetime:
    return now.astimezone(zone(district.timezone))


def window_at(district: Courteous, now: datetime) -> Window | None:
    """The window ``now`` falls in (windows do not overlap), or None."""
    if not district.windows:
        return None
    here = local(district, now)
    for window in district.windows:
        if window.holds(here):
            return window
    return None


def cap_at(district: Courteous, now: datetime) -> int | None:
    """The district's cap at ``now``: its window's ``max_connections`` inside a window, else
    its own ``max_connections`` (None: uncapped). The change feed's walk calls this too."""
    window = window_at(district, now)
    return district.max_connections if window is None else window.max_connections


def paused(district: Courteous, now: datetime) -> Pause | None:
    """The pause in effect at ``now`` (its dates are inclusive, in the district's zone)."""
    if not district.pauses:
        return None
    today = local(district, now).date()
    return _first(p for p in district.pauses if p.start <= today <= p.end)


def coming_pause(
    district: Courteous, now: datetime, within: timedelta = PAUSE_WARNING
) -> Pause | None:
    """The earliest pause not yet begun that starts within ``within`` of ``now``."""
    today = local(district, now).date()
    ahead = sorted((p for p in district.pauses if today < p.start), key=lambda p: p.start)
    return ahead[0] if ahead and ahead[0].start - today <= within else None


def pause_end(district: Courteous, pause: Pause) -> datetime:
    """The first instant after ``pause``: midnight after its last day, in the district's zone."""
    return datetime.combine(pause.end + timedelta(days=1), time.min, tzinfo=zone(district.timezone))


def _first(items: Iterable[Pause]) -> Pause | None:
    return next(iter(items), None)


def describe_now(district: Courteous, now: datetime) -> str:
    """One line for the console: the pause in effect, else the window (or the cap) now."""
    pause = paused(district, now)
    if pause is not None:
        return f"paused until {pause.end.isoformat()} inclusive ({pause.reason})"
    window = window_at(district, now)
    if window is not None:
        return f"peak window {window.describe()} ({district.timezone})"
    cap = district.max_connections
    text = "no cap" if cap is None else f"{cap} at once"
    if district.windows:
        text = f"outside its windows: {text} ({district.timezone})"
    coming = coming_pause(district, now)
    if coming is not None:
        text += f"; pauses {coming.start.isoformat()} to {coming.end.isoformat()} ({coming.reason})"
    return text
