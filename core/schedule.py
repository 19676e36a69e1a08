"""Task schedules: an interval in hours or a five-field cron line; validation and next run times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from croniter import CroniterError, croniter

from core.errors import InputError

MAX_INTERVAL_HOURS = 65535
# A schedule must fire within this horizon: a cron line such as Feb 30 never does, and would silently never run.
HORIZON = timedelta(days=5 * 366)


class ScheduleError(InputError):
    """A stored schedule whose next run cannot be computed (it never fires)."""


def validate_schedule(interval_hours: int | None, cron: str | None) -> None:
    """Raise InputError naming the field when the schedule is invalid."""
    if interval_hours is not None and cron:
        raise InputError("schedule: give either an interval or a cron line, not both", field="schedule")
    if interval_hours is not None and not 1 <= interval_hours <= MAX_INTERVAL_HOURS:
        raise InputError(f"interval: must be 1 to {MAX_INTERVAL_HOURS} hours, got {interval_hours}", field="interval")
    if cron:
        fields = cron.split()
        if len(fields) != 5:
            raise InputError(f"cron: {cron!r} has {len(fields)} fields; expected 5 (minute hour day month weekday)", field="cron")
        if not croniter.is_valid(cron):
            raise InputError(f"cron: {cron!r} is not a valid cron line", field="cron")
        now = datetime.now(timezone.utc)
        runs = next_runs(None, cron, now, count=1)
        if not runs or runs[0] > now + HORIZON:
            raise InputError(f"cron: {cron!r} never fires within the next 5 years (a date such as Feb 30 never comes)", field="cron")


def next_runs(interval_hours: int | None, cron: str | None, after: datetime, count: int = 3,
              anchor: datetime | None = None) -> list[datetime]:
    """The next count run times strictly after `after` (UTC). Interval runs step from anchor (or after).

    A cron line that stops firing (or never fires, like Feb 30) yields fewer times, possibly none.
    """
    after = after.astimezone(timezone.utc) if after.tzinfo else after.replace(tzinfo=timezone.utc)
    if cron:
        try:
            it = croniter(cron, after)
        except (CroniterError, ValueError, KeyError):
            return []
        out: list[datetime] = []
        for _ in range(count):
            try:
                out.append(it.get_next(datetime).astimezone(timezone.utc))
            except (CroniterError, ValueError, OverflowError):
                break
        return out
    if interval_hours:
        step = timedelta(hours=interval_hours)
        start = anchor or after
        start = start.astimezone(timezone.utc) if start.tzinfo else start.replace(tzinfo=timezone.utc)
        if start <= after:
            start += step * ((after - start) // step + 1)
        return [start + step * i for i in range(count)]
    return []
