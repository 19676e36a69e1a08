"""Scheduled slots of periodic tasks: which are due, and claiming a slot so only one scheduler runs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, update
from sqlmodel import col, select

from storage.db import Database
from storage.tables import ChangeSecretTask


@dataclass(frozen=True)
class ScheduledTask:
    """A periodic task as the scheduler sees it: its schedule and the slot it is due at."""

    id: int
    name: str
    interval_hours: int | None
    cron: str | None
    start_at: datetime | None
    next_run_at: datetime | None  # as stored: the value a claim must still find

    def due_at(self, now: datetime) -> datetime:
        """When this task is due; an active periodic task with no slot yet is due at its start time or now."""
        if self.next_run_at is not None:
            return self.next_run_at
        return self.start_at or now


def _periodic():  # type: ignore[no-untyped-def]
    return (col(ChangeSecretTask.active).is_(True),
            or_(col(ChangeSecretTask.interval_hours).is_not(None),
                func.coalesce(ChangeSecretTask.cron, "") != ""))


def _info(row: ChangeSecretTask) -> ScheduledTask:
    assert row.id is not None
    return ScheduledTask(id=row.id, name=row.name, interval_hours=row.interval_hours, cron=row.cron or None,
                         start_at=row.start_at, next_run_at=row.next_run_at)


def scheduled_tasks(db: Database) -> list[ScheduledTask]:
    """Every active periodic task, soonest slot first."""
    with db.read() as s:
        rows = s.exec(select(ChangeSecretTask).where(*_periodic())
                      .order_by(col(ChangeSecretTask.next_run_at), col(ChangeSecretTask.id))).all()
        return [_info(r) for r in rows]


def scheduled_task(db: Database, task_id: int) -> ScheduledTask | None:
    """One task's schedule, None when it is gone, inactive or no longer periodic."""
    with db.read() as s:
        row = s.exec(select(ChangeSecretTask).where(ChangeSecretTask.id == task_id, *_periodic())).first()
        return _info(row) if row else None


def claim_slot(db: Database, task_id: int, seen: datetime | None, next_at: datetime) -> bool:
    """Move the task's next_run_at from the value we saw to next_at; True only for the one caller that did it.

    The UPDATE matches the seen value, so of two schedulers that saw the same due slot only the first
    (writers are serialised by BEGIN IMMEDIATE) changes a row; the other finds the new value and gets False.
    PostgreSQL gives the same without a lock of ours: the second UPDATE waits on the row the first changed
    and, under READ COMMITTED, re-checks its WHERE against the committed value, which no longer matches.
    """
    slot = (col(ChangeSecretTask.next_run_at).is_(None) if seen is None
            else col(ChangeSecretTask.next_run_at) == seen)
    with db.write() as s:
        result = s.execute(update(ChangeSecretTask)
                           .where(col(ChangeSecretTask.id) == task_id, slot, *_periodic())
                           .values(next_run_at=next_at))
        return result.rowcount == 1
