"""Change windows: "Mon-Fri 01:00-05:00 Europe/Berlin" parsed once, asked `in_window(now)` anywhere.

A window is days of the week, a time range and a named time zone. The range may pass midnight
("Sat 22:00-02:00" runs from Saturday 22:00 to Sunday 02:00: it belongs to the day it starts on).
A run that reaches the end of its window stops starting new accounts: `WindowGuard` turns the predicate
`closed()` into the engine's cancel event, so what is in flight finishes and settles as on a cancel.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InputError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
FIELD = "window"


def _clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Window:
    """One allowed window: weekdays (0 = Monday), start and end minute of the day, and the zone."""

    text: str
    days: frozenset[int]
    start: int  # minutes after midnight
    end: int  # minutes after midnight; <= start means the window passes midnight
    zone: str

    def contains(self, now: datetime) -> bool:
        """Whether the aware datetime now falls inside the window."""
        local = now.astimezone(ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        today, yesterday = local.weekday(), (local.weekday() - 1) % 7
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        return (today in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)

    def end_after(self, now: datetime) -> datetime | None:
        """When the window holding now ends (None when now is outside it)."""
        if not self.contains(now):
            return None
        local = now.astimezone(ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        day = local.date()
        if self.start >= self.end and minute >= self.start:
            day += timedelta(days=1)
        end = datetime.combine(day, time(0), tzinfo=ZoneInfo(self.zone)) + timedelta(minutes=self.end)
        return end.astimezone(timezone.utc)


def _day(token: str, text: str) -> int:
    key = token.strip().lower()[:3]
    if key not in DAYS or len(token.strip()) < 3:
        raise InputError(f"{FIELD}: {text!r}: {token!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)", field=FIELD)
    return DAYS.index(key)


def _days(spec: str, text: str) -> frozenset[int]:
    if spec.lower() in ("daily", "*", "every day", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        if not part.strip():
            raise InputError(f"{FIELD}: {text!r}: an empty day in {spec!r}", field=FIELD)
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day(first, text), _day(last, text)
            i = a
            while True:  # a range may wrap the week ("Fri-Mon")
                days.add(i)
                if i == b:
                    break
                i = (i + 1) % 7
        else:
            days.add(_day(part, text))
    return frozenset(days)


def _minute(token: str, text: str) -> int:
    m = _TIME.match(token.strip())
    if not m:
        raise InputError(f"{FIELD}: {text!r}: {token!r} is not a time such as 01:00", field=FIELD)
    value = int(m.group(1)) * 60 + int(m.group(2))
    if value > 24 * 60:
        raise InputError(f"{FIELD}: {text!r}: {token!r} is after 24:00", field=FIELD)
    return value


def parse_window(text: str) -> Window:
    """Parse "DAYS HH:MM-HH:MM ZONE" (DAYS: Mon-Fri, Sat,Sun, Mon or daily); InputError names the field."""
    parts = (text or "").split()
    if len(parts) != 3:
        raise InputError(f"{FIELD}: {text!r} is not \"DAYS HH:MM-HH:MM ZONE\", e.g. \"Mon-Fri 01:00-05:00 Europe/Berlin\"", field=FIELD)
    day_spec, hours, zone = parts
    days = _days(day_spec, text)
    first, sep, last = hours.partition("-")
    if not sep:
        raise InputError(f"{FIELD}: {text!r}: {hours!r} is not a time range such as 01:00-05:00", field=FIELD)
    start, end = _minute(first, text), _minute(last, text)
    if start == 24 * 60:
        raise InputError(f"{FIELD}: {text!r}: a window cannot start at 24:00", field=FIELD)
    if start == end:
        raise InputError(f"{FIELD}: {text!r}: the window is empty (it starts and ends at {first})", field=FIELD)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"{FIELD}: {text!r}: {zone!r} is not a time zone name such as Europe/Berlin or UTC", field=FIELD) from None
    return Window(text=" ".join(parts), days=days, start=start, end=end, zone=zone)


def parse_windows(texts: Sequence[str]) -> list[Window]:
    """Parse several windows (a task allows work when any one holds)."""
    return [parse_window(t) for t in texts]


def in_window(windows: Sequence[Window], now: datetime | None = None) -> bool:
    """Whether work may start at now: true with no windows at all, else when any window holds."""
    if not windows:
        return True
    now = now or _clock()
    return any(w.contains(now) for w in windows)


def next_opening(windows: Sequence[Window], after: datetime, horizon_days: int = 8) -> datetime | None:
    """The first minute at or after `after` that lies inside a window (None with no windows)."""
    if not windows:
        return None
    t = after.astimezone(timezone.utc).replace(second=0, microsecond=0)
    if t < after:
        t += timedelta(minutes=1)
    # Minute steps over a week are cheap (about 10k checks) and exact across daylight-saving changes.
    for _ in range(horizon_days * 24 * 60):
        if in_window(windows, t):
            return t
        t += timedelta(minutes=1)
    return None


def closing_predicate(windows: Sequence[Window], clock: Callable[[], datetime] = _clock) -> Callable[[], bool]:
    """A predicate the engine can poll: true once no window holds any more (start no new account)."""
    return lambda: not in_window(windows, clock())


class WindowGuard:
    """While active, sets the run's cancel event as soon as the windows close (polled every `poll` seconds)."""

    def __init__(self, windows: Sequence[Window], cancel: threading.Event, *, poll: float = 5.0,
                 clock: Callable[[], datetime] = _clock) -> None:
        self.closed = closing_predicate(windows, clock)
        self.cancel = cancel
        self.poll = poll
        self.tripped = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active = bool(windows)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            if self.closed():
                self.tripped = True
                self.cancel.set()
                return

    @contextmanager
    def active(self) -> Iterator["WindowGuard"]:
        """Watch the windows for the duration of the block."""
        if self._active:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="keyturn-window-guard")
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=self.poll + 1)
