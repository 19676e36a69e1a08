"""Change windows: the parser names the field, and in_window answers in the window's own time zone."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from core.errors import InputError
from core.windows import WindowGuard, closing_predicate, in_window, next_opening, parse_window, parse_windows

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekday_window_in_berlin_time() -> None:
    w = parse_window("Mon-Fri 01:00-05:00 Europe/Berlin")
    # 2026-12-02 is a Wednesday; Berlin is UTC+1 in winter.
    assert w.contains(at("2026-12-02T00:00"))  # 01:00 Berlin
    assert w.contains(at("2026-12-02T03:59"))
    assert not w.contains(at("2026-12-02T04:00"))  # 05:00 Berlin: the end is outside
    assert not w.contains(at("2026-12-01T23:59"))  # 00:59 Berlin
    assert not w.contains(at("2026-12-05T01:00"))  # Saturday
    # Summer time: UTC+2, so 01:00 Berlin is 23:00 UTC the day before.
    assert w.contains(at("2026-07-07T23:30"))  # Wednesday 01:30 Berlin


def test_window_passing_midnight_belongs_to_the_day_it_starts() -> None:
    w = parse_window("Sat 22:00-02:00 UTC")
    assert w.contains(at("2026-12-05T23:00"))  # Saturday night
    assert w.contains(at("2026-12-06T01:59"))  # early Sunday
    assert not w.contains(at("2026-12-06T22:30"))  # Sunday night
    assert w.end_after(at("2026-12-05T23:00")) == at("2026-12-06T02:00")


def test_lists_wrapping_ranges_daily_and_24_00() -> None:
    assert parse_window("Fri-Mon 00:00-24:00 UTC").days == frozenset({4, 5, 6, 0})
    assert parse_window("sat,SUN 10:00-11:00 UTC").days == frozenset({5, 6})
    assert parse_window("daily 00:00-24:00 UTC").contains(at("2026-12-02T23:59"))


@pytest.mark.parametrize("text, words", [
    ("Mon-Fri 01:00-05:00", "DAYS HH:MM-HH:MM ZONE"),
    ("Mon-Fry 01:00-05:00 UTC", "'Fry' is not a day"),
    ("Mon 1am-5am UTC", "'1am' is not a time"),
    ("Mon 01:00 UTC", "not a time range"),
    ("Mon 25:00-26:00 UTC", "is not a time"),
    ("Mon 03:00-03:00 UTC", "the window is empty"),
    ("Mon 01:00-05:00 Mars/Olympus", "'Mars/Olympus' is not a time zone"),
])
def test_bad_windows_name_the_field_and_the_problem(text: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_window(text)
    assert str(err.value).startswith("window: ")
    assert words in str(err.value)


def test_no_windows_means_always_and_any_window_opens() -> None:
    assert in_window([], at("2026-12-02T12:00"))
    ws = parse_windows(["Mon 01:00-02:00 UTC", "Wed 12:00-13:00 UTC"])
    assert in_window(ws, at("2026-12-02T12:30"))
    assert not in_window(ws, at("2026-12-02T13:30"))
    assert next_opening(ws, at("2026-12-02T13:30")) == at("2026-12-07T01:00")


def test_the_guard_sets_the_runs_cancel_event_when_the_window_closes() -> None:
    now = [at("2026-12-02T12:59")]
    ws = parse_windows(["Wed 12:00-13:00 UTC"])
    closed = closing_predicate(ws, lambda: now[0])
    assert not closed()
    cancel = threading.Event()
    guard = WindowGuard(ws, cancel, poll=0.01, clock=lambda: now[0])
    with guard.active():
        assert not cancel.wait(0.05)
        now[0] = at("2026-12-02T13:00")
        assert cancel.wait(5)
    assert guard.tripped
