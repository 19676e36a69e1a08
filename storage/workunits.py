"""Work units of executions run by `keyturn worker` processes: queue, claim under a lease, renew, finish.

A unit is one asset of a running execution with the records of its accounts. Workers take units with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (takers never queue behind each other on one row); on
SQLite, whose writer lock already serializes every write transaction, a conditional UPDATE claims it. Each
lease renewal and the finish name the attempt they belong to (a fencing token): a worker whose unit was
taken over by another after its lease expired learns it at its next renewal and writes nothing more there.

Times are the workers' clocks (UTC): machines sharing a database are expected to run NTP; the lease is
long against clock skew (a minute by default, renewed every third of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import col, select

from storage.db import Database
from storage.tables import ChangeRecord, Execution, WorkRun, WorkUnit, utcnow

QUEUED = "queued"
RUNNING = "running"
DONE = "done"


@dataclass(frozen=True)
class ClaimedUnit:
    """A unit this worker holds: what to work on, and the attempt that fences its writes."""

    id: int
    execution_id: int
    task_id: int | None
    task_holder: str
    asset_id: int | None
    asset_name: str
    record_ids: tuple[int, ...]
    attempt: int
    taken_over: bool  # the unit was running under another worker whose lease expired


@dataclass(frozen=True)
class RunProgress:
    """How far a queued execution is: units by status and records by status."""

    units: dict[str, int]
    records: dict[str, int]
    finished: bool
    cancel_requested: bool


def worker_lock_holder(execution_id: int) -> str:
    """The task lock's holder while workers run an execution (no host:pid, so no reconcile frees it early)."""
    return f"workers:exec-{execution_id}"


def queue_units(db: Database, execution_id: int, task_id: int | None, units: Sequence[tuple[int, str, list[int]]],
                *, previous_holder: str) -> str:
    """Hand an execution to the workers in one transaction: its units, and its task lock moved to them.

    units: (asset id, asset name, record ids). Returns the lock holder the workers renew.
    """
    from storage.tables import TaskLock

    holder = worker_lock_holder(execution_id)
    with db.write() as s:
        s.add(WorkRun(execution_id=execution_id, task_id=task_id, lock_holder=holder))
        s.add_all([WorkUnit(execution_id=execution_id, asset_id=asset_id, asset_name=name, record_ids=list(ids))
                   for asset_id, name, ids in units])
        if task_id is not None:
            lock = s.get(TaskLock, task_id, with_for_update=True)
            if lock is not None and lock.holder == previous_holder:
                lock.holder = holder
                s.add(lock)
    return holder


def claim_unit(db: Database, worker: str, lease: timedelta, *, now: datetime | None = None) -> ClaimedUnit | None:
    """Take the oldest queued unit, or a running one whose lease expired; None when there is none."""
    now = now or utcnow()
    open_units = (col(WorkUnit.status) == QUEUED) | ((col(WorkUnit.status) == RUNNING) & (col(WorkUnit.lease_until) < now))
    with db.read() as s:
        # Idle workers poll: a plain indexed read first, so a poll that finds nothing commits and locks nothing.
        if s.exec(select(WorkUnit.id).where(open_units).limit(1)).first() is None:
            return None
    with db.write() as s:
        conn = s.connection()
        stmt = select(WorkUnit.id).where(open_units).order_by(col(WorkUnit.id)).limit(1)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        unit_id = s.exec(stmt).first()
        if unit_id is None:
            return None
        row = s.get(WorkUnit, unit_id)
        assert row is not None
        taken_over = row.status == RUNNING
        done = conn.execute(
            update(WorkUnit).where(col(WorkUnit.id) == unit_id, open_units)
            .values(status=RUNNING, worker=worker, attempt=WorkUnit.attempt + 1, lease_until=now + lease,
                    started_at=func.coalesce(WorkUnit.started_at, now))).rowcount
        if done != 1:
            return None
        s.refresh(row)
        run = s.get(WorkRun, row.execution_id)
        return ClaimedUnit(row.id, row.execution_id, run.task_id if run else None, run.lock_holder if run else "",
                           row.asset_id, row.asset_name, tuple(row.record_ids), row.attempt, taken_over)


def renew_lease(db: Database, unit: ClaimedUnit, worker: str, lease: timedelta) -> bool:
    """Extend the lease of a unit this worker holds; False when it was taken over (or finished) meanwhile."""
    with db.write() as s:
        return s.connection().execute(
            update(WorkUnit).where(col(WorkUnit.id) == unit.id, col(WorkUnit.worker) == worker,
                                   col(WorkUnit.attempt) == unit.attempt, col(WorkUnit.status) == RUNNING)
            .values(lease_until=utcnow() + lease)).rowcount == 1


def finish_unit(db: Database, unit: ClaimedUnit, worker: str) -> bool:
    """Mark a held unit done; False when it is no longer this worker's."""
    with db.write() as s:
        return s.connection().execute(
            update(WorkUnit).where(col(WorkUnit.id) == unit.id, col(WorkUnit.worker) == worker,
                                   col(WorkUnit.attempt) == unit.attempt, col(WorkUnit.status) == RUNNING)
            .values(status=DONE, lease_until=None, finished_at=utcnow())).rowcount == 1


def claim_finish(db: Database, execution_id: int) -> bool:
    """True for exactly one caller once every unit of the execution is done: that caller finishes the execution."""
    with db.write() as s:
        left = s.exec(select(func.count()).select_from(WorkUnit).where(
            WorkUnit.execution_id == execution_id, col(WorkUnit.status) != DONE)).one()
        if left:
            return False
        return s.connection().execute(
            update(WorkRun).where(col(WorkRun.execution_id) == execution_id, col(WorkRun.finished_at).is_(None))
            .values(finished_at=utcnow())).rowcount == 1


def request_cancel(db: Database, execution_id: int) -> None:
    """Ask the workers to start no account not yet pushed (accounts in flight finish and settle)."""
    with db.write() as s:
        s.connection().execute(update(WorkRun).where(col(WorkRun.execution_id) == execution_id)
                               .values(cancel_requested=True))


def cancel_requested(db: Database, execution_id: int) -> bool:
    """Whether the person who queued the execution asked to cancel it."""
    with db.read() as s:
        run = s.get(WorkRun, execution_id)
        return bool(run and run.cancel_requested)


def has_open_units(db: Database, execution_id: int) -> bool:
    """Whether workers still have (or will take) work of this execution: then it is alive without a process."""
    with db.read() as s:
        return s.exec(select(WorkUnit.id).where(WorkUnit.execution_id == execution_id,
                                                col(WorkUnit.status) != DONE).limit(1)).first() is not None


def worker_run_alive(db: Database, execution_id: int, *, grace: timedelta = timedelta(minutes=10)) -> bool:
    """Whether a run handed to the workers is still theirs: a unit is left, or its last unit ended within grace.

    The grace covers the moments between the last unit's end and the execution's finish (done by the worker
    that ended it); a finisher that died there leaves the execution to reconcile once the grace is over.
    """
    with db.read() as s:
        if s.exec(select(WorkUnit.id).where(WorkUnit.execution_id == execution_id,
                                            col(WorkUnit.status) != DONE).limit(1)).first() is not None:
            return True
        last = s.exec(select(func.max(WorkUnit.finished_at)).where(WorkUnit.execution_id == execution_id)).one()
        if last is None:
            return False
        last = last if last.tzinfo is not None else last.replace(tzinfo=utcnow().tzinfo)
        return last > utcnow() - grace


def is_worker_run(db: Database, execution_id: int) -> bool:
    """Whether the execution was handed to the workers."""
    with db.read() as s:
        return s.get(WorkRun, execution_id) is not None


def progress(db: Database, execution_id: int) -> RunProgress:
    """Units and records of an execution by status (two grouped counts: cheap enough to poll)."""
    with db.read() as s:
        units = dict(s.exec(select(WorkUnit.status, func.count()).where(WorkUnit.execution_id == execution_id)
                            .group_by(WorkUnit.status)).all())
        records = dict(s.exec(select(ChangeRecord.status, func.count()).where(ChangeRecord.execution_id == execution_id)
                              .group_by(ChangeRecord.status)).all())
        run = s.get(WorkRun, execution_id)
        ex = s.get(Execution, execution_id)
        return RunProgress(units, records, finished=ex is not None and ex.status != "running",
                           cancel_requested=bool(run and run.cancel_requested))


def settled_since(db: Database, execution_id: int,
                  after: datetime | None) -> list[tuple[int, int | None, str, str, str, str, datetime]]:
    """(record id, asset id, asset, user, status, error, finished_at) of the execution's records settled since after."""
    with db.read() as s:
        stmt = (select(ChangeRecord.id, ChangeRecord.asset_id, ChangeRecord.asset_name, ChangeRecord.username,
                       ChangeRecord.status, ChangeRecord.error, ChangeRecord.finished_at)
                .where(ChangeRecord.execution_id == execution_id, col(ChangeRecord.finished_at).is_not(None))
                .order_by(col(ChangeRecord.finished_at), col(ChangeRecord.id)))
        if after is not None:
            stmt = stmt.where(col(ChangeRecord.finished_at) >= after)
        return [tuple(r) for r in s.exec(stmt).all()]  # type: ignore[misc]


def queued_count(db: Database) -> int:
    """Units waiting for a worker (queued, or running under an expired lease)."""
    now = utcnow()
    with db.read() as s:
        return s.exec(select(func.count()).select_from(WorkUnit).where(
            (col(WorkUnit.status) == QUEUED) | ((col(WorkUnit.status) == RUNNING) & (col(WorkUnit.lease_until) < now)))).one()


__all__ = ["ClaimedUnit", "RunProgress", "claim_finish", "claim_unit", "finish_unit", "queue_units", "renew_lease"]


@dataclass(frozen=True)
class WorkRunInfo:
    """What finishing a queued execution needs: its task, the task lock's holder, and a cancel request."""

    task_id: int | None
    lock_holder: str
    cancel_requested: bool


def run_info(db: Database, execution_id: int) -> WorkRunInfo:
    """The work_run row of an execution handed to the workers."""
    with db.read() as s:
        run = s.get(WorkRun, execution_id)
        if run is None:
            from storage.inventory import NotFound

            raise NotFound(f"execution {execution_id} was not handed to workers")
        return WorkRunInfo(run.task_id, run.lock_holder, run.cancel_requested)


def key_matches(db: Database) -> bool:
    """Whether the open vault's key decrypts the stored key check value (False also when there is none)."""
    from storage.db import KEY_CHECK_NAME, KEY_CHECK_TEXT
    from storage.tables import VaultItem
    from storage.vault import VaultError

    with db.read() as s:
        item = s.get(VaultItem, KEY_CHECK_NAME)
        if item is None or item.value_enc is None:
            return False
        try:
            return db.vault.decrypt(item.value_enc, "vault_item", KEY_CHECK_NAME, "value_enc") == KEY_CHECK_TEXT
        except VaultError:
            return False
