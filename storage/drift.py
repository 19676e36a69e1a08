"""Repository for issue 16's tables: task options, heartbeat results, record flags and operators' age keys.

Only storage: rules (what a window means, when a heartbeat is due, who may ignore a record) live in core.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.db import Database
from storage.errors import NotFound
from storage.types import HEARTBEAT_STATUSES as HEARTBEAT_STATUSES, DependencyStep, HeartbeatInfo
from storage.tables import (
    Account, Asset, ChangeRecord, HeartbeatResult, Operator, OperatorAgeKey, RecordFlag, TaskOption, utcnow,
)

@dataclass
class TaskOptions:
    """A task's heartbeat schedule, windows, retries, dependency steps and hand-over choice."""

    heartbeat_interval_hours: int | None = None
    heartbeat_cron: str | None = None
    next_heartbeat_at: datetime | None = None
    windows: list[str] = field(default_factory=list)
    retries: int = 0
    retry_delay_minutes: int = 0
    send_secrets: bool = False
    reconcile_drift: bool = False
    dependencies: list[DependencyStep] = field(default_factory=list)

    @property
    def heartbeat_scheduled(self) -> bool:
        """Whether heartbeats run on a schedule."""
        return self.heartbeat_interval_hours is not None or bool(self.heartbeat_cron)


@dataclass(frozen=True)
class RecordFlagInfo:
    """Flags of one record (defaults when none were set)."""

    record_id: int
    ignored: bool = False
    ignored_by: str = ""
    ignored_at: datetime | None = None
    dependency_status: str = ""
    dependency_error: str = ""


# -- task options ---------------------------------------------------------------------------------------
def _options(row: TaskOption | None) -> TaskOptions:
    if row is None:
        return TaskOptions()
    return TaskOptions(
        heartbeat_interval_hours=row.heartbeat_interval_hours, heartbeat_cron=row.heartbeat_cron,
        next_heartbeat_at=row.next_heartbeat_at, windows=list(row.windows or []), retries=row.retries,
        retry_delay_minutes=row.retry_delay_minutes, send_secrets=row.send_secrets,
        reconcile_drift=row.reconcile_drift,
        dependencies=[DependencyStep.from_dict(d) for d in row.dependencies or []],
    )


def get_task_options(db: Database, task_id: int) -> TaskOptions:
    """The options of a task (defaults when it never had any)."""
    with db.read() as s:
        return _options(s.get(TaskOption, task_id))


def all_task_options(db: Database) -> dict[int, TaskOptions]:
    """Options of every task that has any, by task id."""
    with db.read() as s:
        return {row.task_id: _options(row) for row in s.exec(select(TaskOption)).all()}


def save_task_options_in(session: Session, task_id: int, opts: TaskOptions) -> None:
    """Store a task's options inside an open write session (commits with the task and its audit event)."""
    row = session.get(TaskOption, task_id)
    if row is None:
        row = TaskOption(task_id=task_id)
    row.heartbeat_interval_hours = opts.heartbeat_interval_hours
    row.heartbeat_cron = opts.heartbeat_cron or None
    row.next_heartbeat_at = opts.next_heartbeat_at
    row.windows = list(opts.windows)
    row.retries = opts.retries
    row.retry_delay_minutes = opts.retry_delay_minutes
    row.send_secrets = opts.send_secrets
    row.reconcile_drift = opts.reconcile_drift
    row.dependencies = [d.to_dict() for d in opts.dependencies]
    session.add(row)


def save_task_options(db: Database, task_id: int, opts: TaskOptions) -> None:
    """Store a task's options in their own transaction."""
    with db.write() as s:
        save_task_options_in(s, task_id, opts)


def set_next_heartbeat(db: Database, task_id: int, when: datetime | None) -> None:
    """Store when the task's next heartbeat is due."""
    with db.write() as s:
        row = s.get(TaskOption, task_id)
        if row is None:
            row = TaskOption(task_id=task_id)
        row.next_heartbeat_at = when
        s.add(row)


# -- heartbeats -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewHeartbeat:
    """A heartbeat result to store."""

    account_id: int
    task_id: int | None
    asset_name: str
    username: str
    account_version: int
    status: str
    reason: str
    checked_at: datetime


def add_heartbeats(db: Database, results: Iterable[NewHeartbeat]) -> list[int]:
    """Store heartbeat results in one transaction; returns their ids."""
    rows = []
    with db.write() as s:
        for r in results:
            if r.status not in HEARTBEAT_STATUSES:
                raise ValueError(f"heartbeat status {r.status!r} is not one of {HEARTBEAT_STATUSES}")
            row = HeartbeatResult(account_id=r.account_id, task_id=r.task_id, asset_name=r.asset_name,
                                  username=r.username, account_version=r.account_version, status=r.status,
                                  reason=r.reason, checked_at=r.checked_at)
            s.add(row)
            rows.append(row)
        s.flush()
        return [row.id for row in rows]  # type: ignore[misc]


def _heartbeat_info(row: HeartbeatResult) -> HeartbeatInfo:
    return HeartbeatInfo(id=row.id, account_id=row.account_id, task_id=row.task_id, asset_name=row.asset_name,  # type: ignore[arg-type]
                         username=row.username, status=row.status, reason=row.reason, checked_at=row.checked_at)


def latest_heartbeats(db: Database, *, status: str | None = None, since: datetime | None = None,
                      scope: frozenset[int] | None = None) -> list[HeartbeatInfo]:
    """The newest heartbeat of each account (optionally only those with status, checked after since, or on an
    asset in scope)."""
    with db.read() as s:
        newest = (select(HeartbeatResult.account_id, func.max(HeartbeatResult.id).label("last_id"))
                  .group_by(col(HeartbeatResult.account_id)).subquery())
        stmt = (select(HeartbeatResult).join(newest, newest.c.last_id == HeartbeatResult.id)
                .order_by(col(HeartbeatResult.asset_name), col(HeartbeatResult.username)))
        if status is not None:
            stmt = stmt.where(HeartbeatResult.status == status)
        if since is not None:
            stmt = stmt.where(col(HeartbeatResult.checked_at) >= since)
        if scope is not None:
            from storage.inventory import in_scope

            stmt = stmt.where(col(HeartbeatResult.account_id).in_(
                select(Account.id).where(in_scope(Account.asset_id, scope))))
        return [_heartbeat_info(r) for r in s.exec(stmt).all()]


def drifted_account_ids(db: Database) -> set[int]:
    """Accounts whose newest heartbeat is not ok."""
    return {h.account_id for h in latest_heartbeats(db) if h.status != "ok"}


# -- record flags ---------------------------------------------------------------------------------------
def _flag_info(record_id: int, row: RecordFlag | None) -> RecordFlagInfo:
    if row is None:
        return RecordFlagInfo(record_id)
    return RecordFlagInfo(record_id, row.ignored, row.ignored_by, row.ignored_at, row.dependency_status,
                          row.dependency_error)


def record_flags(db: Database, record_ids: Iterable[int]) -> dict[int, RecordFlagInfo]:
    """Flags of each record id (defaults for records without any)."""
    ids = list(dict.fromkeys(record_ids))
    with db.read() as s:
        found = {r.record_id: r for r in s.exec(select(RecordFlag).where(col(RecordFlag.record_id).in_(ids))).all()} if ids else {}
        return {i: _flag_info(i, found.get(i)) for i in ids}


def _flag_row(session: Session, record_id: int) -> RecordFlag:
    if session.get(ChangeRecord, record_id) is None:
        raise NotFound(f"record {record_id}: no such change record")
    row = session.get(RecordFlag, record_id)
    if row is None:
        row = RecordFlag(record_id=record_id)
    return row


def set_ignored_in(session: Session, record_id: int, ignored: bool, by: str) -> None:
    """Mark a record ignored (or not) inside an open write session."""
    row = _flag_row(session, record_id)
    row.ignored = ignored
    row.ignored_by = by if ignored else ""
    row.ignored_at = utcnow() if ignored else None
    session.add(row)


def set_dependency_outcome(db: Database, record_id: int, status: str, error: str) -> None:
    """Store the outcome of a record's dependency steps (ok | failed, with the scrubbed error)."""
    with db.write() as s:
        row = _flag_row(s, record_id)
        row.dependency_status = status
        row.dependency_error = error
        s.add(row)


def ignored_record_ids(db: Database) -> set[int]:
    """Records an operator has ignored."""
    with db.read() as s:
        return set(s.exec(select(RecordFlag.record_id).where(RecordFlag.ignored == True)).all())  # noqa: E712


def dependency_failed_record_ids(db: Database) -> set[int]:
    """Records whose dependency steps failed last time."""
    with db.read() as s:
        return set(s.exec(select(RecordFlag.record_id).where(RecordFlag.dependency_status == "failed")).all())


# -- age keys -------------------------------------------------------------------------------------------
def set_age_key_in(session: Session, operator_name: str, public_key: str | None) -> int:
    """Store (None: remove) an operator's age recipient; returns the operator id. NotFound for no such operator."""
    op = session.exec(select(Operator).where(Operator.name == operator_name)).first()
    if op is None:
        raise NotFound(f"no operator named {operator_name!r}")
    row = session.get(OperatorAgeKey, op.id)
    if public_key is None:
        if row is not None:
            session.delete(row)
        return op.id  # type: ignore[return-value]
    if row is None:
        row = OperatorAgeKey(operator_id=op.id, public_key=public_key)  # type: ignore[arg-type]
    row.public_key = public_key
    row.updated_at = utcnow()
    session.add(row)
    return op.id  # type: ignore[return-value]


def age_keys(db: Database, operator_names: Iterable[str]) -> dict[str, str]:
    """Operator name -> age recipient, for those of the names that registered one."""
    names = list(dict.fromkeys(operator_names))
    if not names:
        return {}
    with db.read() as s:
        rows = s.exec(select(Operator.name, OperatorAgeKey.public_key)
                      .join(OperatorAgeKey, col(OperatorAgeKey.operator_id) == Operator.id)
                      .where(col(Operator.name).in_(names))).all()
        return dict(rows)


def account_versions(db: Database, account_ids: Iterable[int]) -> dict[int, int]:
    """Current version of each account id."""
    ids = list(dict.fromkeys(account_ids))
    with db.read() as s:
        return dict(s.exec(select(Account.id, Account.version).where(col(Account.id).in_(ids))).all()) if ids else {}


def asset_id_by_name(db: Database, name: str) -> int | None:
    """The id of an asset by name, None when there is none."""
    with db.read() as s:
        return s.exec(select(Asset.id).where(Asset.name == name)).first()


class RestoreRefused(ValueError):
    """The account moved since the record (another secret became current); nothing was written."""


def restore_record_secret_in(session: Session, db: Database, record_id: int) -> int:
    """Make a record's new secret the account's current one, if the account still holds the record's old secret.

    Checked inside the write transaction, so a change settling meanwhile cannot be overwritten. Returns the
    account id; RestoreRefused when the account changed since (or the record has no new secret).
    """
    from storage.inventory import set_account_secret

    row = session.get(ChangeRecord, record_id)
    if row is None:
        raise NotFound(f"record {record_id}: no such change record")
    acc = session.get(Account, row.account_id) if row.account_id is not None else None
    if acc is None:
        raise RestoreRefused(f"record {record_id}: its account was removed from the inventory")
    new, new_pp = db.unseal(row, "new_secret_enc"), db.unseal(row, "new_passphrase_enc")
    if not new:
        raise RestoreRefused(f"record {record_id}: holds no new secret")
    later = session.exec(select(ChangeRecord.id).where(ChangeRecord.account_id == acc.id, col(ChangeRecord.id) > record_id,
                                                       ChangeRecord.status == "success")).first()
    current = db.unseal(acc, "secret_enc")
    if later is not None or current != db.unseal(row, "old_secret_enc"):
        raise RestoreRefused(f"record {record_id}: the account changed since this record"
                             + (f" (record {later} succeeded later)" if later is not None else ""))
    set_account_secret(db, session, acc, new, new_pp, record_id=row.id)
    acc.last_status = "restored"
    session.add(acc)
    return acc.id  # type: ignore[return-value]


def heartbeat_schedules(db: Database) -> list[tuple[int, str, TaskOptions]]:
    """(task id, task name, options) of every active task with a heartbeat schedule."""
    from storage.tables import ChangeSecretTask

    with db.read() as s:
        rows = s.exec(select(TaskOption, ChangeSecretTask.name).join(ChangeSecretTask, col(ChangeSecretTask.id) == TaskOption.task_id)
                      .where(ChangeSecretTask.active == True)  # noqa: E712
                      .where((col(TaskOption.heartbeat_interval_hours).is_not(None)) | (col(TaskOption.heartbeat_cron).is_not(None)))).all()
        return [(row.task_id, name, _options(row)) for row, name in rows]


def claim_heartbeat(db: Database, task_id: int, seen: datetime | None, nxt: datetime) -> bool:
    """Move a task's next heartbeat from seen to nxt, only if nobody moved it first (one scheduler wins)."""
    from sqlalchemy import update

    with db.write() as s:
        stmt = update(TaskOption).where(col(TaskOption.task_id) == task_id)
        stmt = stmt.where(col(TaskOption.next_heartbeat_at).is_(None) if seen is None else col(TaskOption.next_heartbeat_at) == seen)
        result = s.connection().execute(stmt.values(next_heartbeat_at=nxt))
        return result.rowcount == 1
