"""Task run locks held in the database, so no two processes (TUI, CLI, schedulers) run one task at once."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.tables import TaskLock, utcnow

DEFAULT_TTL = timedelta(minutes=10)


def holder_id(tag: str = "") -> str:
    """This process's identity as a lock holder."""
    return f"{socket.gethostname()}:{os.getpid()}{':' + tag if tag else ''}"


def acquire_task_lock(db: Database, task_id: int, holder: str, ttl: timedelta = DEFAULT_TTL,
                      now: datetime | None = None) -> bool:
    """Take the run lock of a task; False when a live holder has it. An expired lock is taken over.

    The lock row is read FOR UPDATE: on PostgreSQL two takers of an expired lock queue on the row and the
    second sees the first one's holder (SQLite's writer lock gives the same order). Two takers of a missing
    row both insert; the primary key refuses the second.
    """
    now = now or utcnow()
    try:
        with db.write() as s:
            lock = s.get(TaskLock, task_id, with_for_update=True)
            if lock is not None:
                if lock.expires_at > now and lock.holder != holder:
                    return False
                lock.holder, lock.acquired_at, lock.expires_at = holder, now, now + ttl
            else:
                s.add(TaskLock(task_id=task_id, holder=holder, acquired_at=now, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def renew_task_lock(db: Database, task_id: int, holder: str, ttl: timedelta = DEFAULT_TTL) -> bool:
    """Extend a held lock (call while a long run goes on); False if it is no longer ours."""
    with db.write() as s:
        lock = s.get(TaskLock, task_id, with_for_update=True)
        if lock is None or lock.holder != holder:
            return False
        lock.expires_at = utcnow() + ttl
        return True


def release_task_lock(db: Database, task_id: int, holder: str) -> None:
    """Release the lock if we hold it."""
    with db.write() as s:
        lock = s.get(TaskLock, task_id, with_for_update=True)
        if lock is not None and lock.holder == holder:
            s.delete(lock)


def lock_holder(db: Database, task_id: int) -> str | None:
    """Who holds a live lock on the task, if anyone."""
    with db.read() as s:
        lock = s.get(TaskLock, task_id)
        if lock is None or lock.expires_at <= utcnow():
            return None
        return lock.holder
