"""Executions and change records: the write-ahead steps of a secret change, and simple reads for the CLI.

Every function that moves a record is its own short transaction, committed before the engine's next side
effect (DESIGN.md: pending -> pushing -> success | failed | unverified). A settle only applies to a record
that is still open, so the engine and a reconcile can never both settle one record.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, exists, func, insert, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from storage.db import Database
from storage.hotsql import HotStatement
from storage.errors import NotFound
from storage.inventory import replace_secret
from storage.tables import Account, Asset, ChangeRecord, Execution, utcnow
from storage.types import (  # the status names live with the plain types; re-exported here
    FAILED, PENDING, PUSHING, RECORD_STATUSES as RECORD_STATUSES, SUCCESS, SUPERSEDED, UNVERIFIED, AccountInfo,
    ExecutionInfo, RecordInfo,
)

OPEN_STATUSES = (PENDING, PUSHING, UNVERIFIED)
FINAL_STATUSES = (SUCCESS, FAILED, SUPERSEDED)

RUNNING = "running"
EXECUTION_STATUSES = ("running", "success", "partial", "failed", "cancelled", "interrupted")


@dataclass
class PendingItem:
    """One record to create: the account and its new secret (old secrets are copied from the account)."""

    account_id: int
    new_secret: str | None = field(repr=False)
    new_passphrase: str | None = field(default=None, repr=False)
    retry_of: int | None = None
    attempt: int = 1


@dataclass(frozen=True)
class OpenRecord:
    """A record not settled yet, with what a reconcile needs to judge its execution."""

    id: int
    execution_id: int
    execution_status: str
    pid: int | None
    hostname: str
    task_id: int | None
    account_id: int | None
    asset_id: int | None
    asset_name: str
    username: str
    secret_type: str
    status: str
    deadline_at: datetime | None = None

    def waiting(self, now: datetime | None = None) -> bool:
        """Whether the host may still be running this record's change (its deadline has not passed)."""
        return self.deadline_at is not None and self.deadline_at > (now or utcnow())


@dataclass(frozen=True)
class RecordSecrets:
    """Decrypted old and new secrets of a record (reveal view and retry only; never log)."""

    old: str | None = field(repr=False)
    new: str | None = field(repr=False)
    old_passphrase: str | None = field(default=None, repr=False)
    new_passphrase: str | None = field(default=None, repr=False)


# -- helpers ---------------------------------------------------------------------------------------
_WRITE_LOCKS: "weakref.WeakKeyDictionary[Database, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _write(db: Database) -> Iterator[Session]:
    """db.write(), with the engine's threads queued on an in-process lock first.

    Dozens of worker threads settle records at once; left to SQLite's busy handler they would sleep in
    growing steps (up to 100 ms) instead of taking turns the moment the writer commits.
    """
    with _LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(db, threading.Lock())
    with lock, db.write() as session:
        yield session


@contextmanager
def _write_conn(db: Database) -> Iterator[Connection]:
    """_write without the ORM (db.write_conn): the step writer's transactions, taken in the same queue."""
    with _LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(db, threading.Lock())
    with lock, db.write_conn() as conn:
        yield conn


_APPEND_LOG = HotStatement(text("UPDATE execution SET log = log || :t WHERE id = :i"))


def _append_log(conn: Connection | Session, execution_id: int, lines: Sequence[str]) -> None:
    if not lines:
        return
    if isinstance(conn, Session):
        conn = conn.connection()
    _APPEND_LOG.execute(conn, {"t": "".join(line.rstrip("\n") + "\n" for line in lines), "i": execution_id})


def execution_info(row: Execution, with_log: bool = False) -> ExecutionInfo:
    """Row -> ExecutionInfo."""
    return ExecutionInfo(
        id=row.id, task_id=row.task_id, task_name=row.task_name, trigger=row.trigger, status=row.status,
        operator=row.operator, started_at=row.started_at, finished_at=row.finished_at, total=row.total,
        succeeded=row.succeeded, failed=row.failed, unverified=row.unverified, mail_error=row.mail_error,
        log=row.log if with_log else "",
    )


def record_info(row: ChangeRecord) -> RecordInfo:
    """Row -> RecordInfo (no secrets)."""
    return RecordInfo(
        id=row.id, execution_id=row.execution_id, task_id=row.task_id, task_name=row.task_name,
        account_id=row.account_id, asset_id=row.asset_id, asset_name=row.asset_name, username=row.username,
        secret_type=row.secret_type, status=row.status, error=row.error, attempt=row.attempt, retry_of=row.retry_of,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
    )


# -- write side ------------------------------------------------------------------------------------
def create_execution(db: Database, *, task_id: int | None, task_name: str, trigger: str, operator: str,
                     snapshot: dict, pid: int, hostname: str) -> int:
    """Insert a running execution; returns its id."""
    with _write(db) as s:
        row = Execution(task_id=task_id, task_name=task_name, trigger=trigger, operator=operator or "",
                        snapshot=snapshot, pid=pid, hostname=hostname, status=RUNNING)
        s.add(row)
        s.flush()
        return row.id


def add_pending_records(db: Database, execution_id: int, items: Sequence[PendingItem], *,
                        log: Sequence[str] = ()) -> list[int]:
    """Create `pending` records with old (the account's current) and new secrets sealed, in ONE transaction.

    Returns ids in the order of items. Committed before any host is touched. An account another record is
    changing gets a `failed` record instead (see add_claimed_records).
    """
    return add_claimed_records(db, execution_id, items, log=log)[0]


def _aware(when: datetime) -> datetime:
    from datetime import timezone

    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def claim_error(execution_id: int) -> str:
    """The error of a record skipped because another execution holds its account."""
    return f"skipped: the account is being changed by execution {execution_id}"


def add_claimed_records(db: Database, execution_id: int, items: Sequence[PendingItem], *,
                        log: Sequence[str] = ()) -> tuple[list[int], dict[int, str]]:
    """add_pending_records, also returning {record id: why} of the records that did not get their account.

    The claim is taken in the very transaction that commits `pending`, so two runs can never both hold one
    account (SQLite: one writer at a time; PostgreSQL: the accounts are read FOR UPDATE, so a second run
    waits for the first's commit and then sees its claim); a retry may take over the claim of the record it
    retries. Written with Core statements, a few per run and not per record: a run over hundreds of accounts
    starts its first change that much sooner.
    """
    if not items:
        _log_only(db, execution_id, log)
        return [], {}
    record, account, asset, execution = (_table(m) for m in (ChangeRecord, Account, Asset, Execution))
    with _write_conn(db) as conn:
        ex = conn.execute(sa_select(execution.c.task_id, execution.c.task_name)
                          .where(execution.c.id == execution_id).with_for_update()).first()
        if ex is None:
            raise NotFound(f"no execution with id {execution_id}")
        wanted = sorted({i.account_id for i in items})
        accounts = {a["id"]: a for a in conn.execute(
            sa_select(*(account.c[c] for c in _ACCOUNT_READ)).where(account.c.id.in_(wanted))
            .order_by(account.c.id).with_for_update()).mappings()}
        for item in items:
            if item.account_id not in accounts:
                raise NotFound(f"no account with id {item.account_id}")
        asset_names = dict(conn.execute(sa_select(asset.c.id, asset.c.name).where(
            asset.c.id.in_({a["asset_id"] for a in accounts.values()}))).all())
        now = utcnow()
        live = _live_claims(conn, [a["claimed_by"] for a in accounts.values() if a["claimed_by"] is not None], now)
        rows: list[dict[str, Any]] = []
        busy: dict[int, str] = {}  # position in items -> why it cannot be claimed
        taken: set[int] = set()
        for pos, item in enumerate(items):
            acc = accounts[item.account_id]
            holder = live.get(acc["claimed_by"]) if acc["claimed_by"] is not None else None
            if holder is not None and acc["claimed_by"] != item.retry_of:
                busy[pos] = claim_error(holder)
            elif acc["id"] in taken:
                busy[pos] = claim_error(execution_id)
            taken.add(acc["id"])
            rows.append({
                "execution_id": execution_id, "task_id": ex.task_id, "account_id": acc["id"],
                "asset_id": acc["asset_id"], "task_name": ex.task_name, "asset_name": asset_names.get(acc["asset_id"], ""),
                "username": acc["username"], "secret_type": acc["secret_type"],
                "status": FAILED if pos in busy else PENDING, "attempt": item.attempt, "retry_of": item.retry_of,
                "created_at": now, "start_version": acc["version"], "error": busy.get(pos, ""),
                "finished_at": now if pos in busy else None,
            })
        # Ids first, in the order of items: each ciphertext is bound to its row id.
        ids = [r[0] for r in conn.execute(insert(record).returning(record.c.id, sort_by_parameter_order=True), rows)]
        seals: list[dict[str, Any]] = []
        claims: list[dict[str, Any]] = []
        skipped: dict[int, str] = {}
        for pos, (rid, row, item) in enumerate(zip(ids, rows, items)):
            acc, row["id"] = accounts[item.account_id], rid
            seals.append({
                "b_id": rid,
                "b_old": db.seal_value("change_record", row, "old_secret_enc", db.unseal_value("account", acc, "secret_enc")),
                "b_old_phrase": db.seal_value("change_record", row, "old_passphrase_enc",
                                              db.unseal_value("account", acc, "passphrase_enc")),
                "b_new": db.seal_value("change_record", row, "new_secret_enc", item.new_secret),
                "b_new_phrase": db.seal_value("change_record", row, "new_passphrase_enc", item.new_passphrase),
            })
            if pos in busy:
                skipped[rid] = busy[pos]
            else:
                claims.append({"b_id": acc["id"], "b_claimed": rid})
        b = bindparam
        conn.execute(update(record).where(record.c.id == b("b_id")).values(
            old_secret_enc=b("b_old"), old_passphrase_enc=b("b_old_phrase"), new_secret_enc=b("b_new"),
            new_passphrase_enc=b("b_new_phrase")), seals)
        if claims:
            conn.execute(update(account).where(account.c.id == b("b_id")).values(claimed_by=b("b_claimed")), claims)
        conn.execute(update(execution).where(execution.c.id == execution_id)
                     .values(total=func.coalesce(execution.c.total, 0) + len(rows)))
        _append_log(conn, execution_id, log)
        return ids, skipped


def _live_claims(conn: Connection, record_ids: Sequence[int], now: datetime) -> dict[int, int]:
    """{record id: its execution id} of the records among record_ids whose change may still be under way:
    pending, pushing, or unverified before its deadline (an account claimed by one of them is busy)."""
    if not record_ids:
        return {}
    record = _table(ChangeRecord)
    live: dict[int, int] = {}
    for rid, ex_id, status, deadline in conn.execute(
            sa_select(record.c.id, record.c.execution_id, record.c.status, record.c.deadline_at)
            .where(record.c.id.in_(sorted(set(record_ids))))):
        if status in FINAL_STATUSES:
            continue
        if status == UNVERIFIED and (deadline is None or _aware(deadline) <= now):
            continue
        live[rid] = ex_id
    return live


def _log_only(db: Database, execution_id: int, log: Sequence[str]) -> None:
    if log:
        with _write(db) as s:
            _append_log(s, execution_id, log)


def _mark_pushing_in(conn: Connection, record_id: int, deadline: datetime | None = None) -> bool:
    # One UPDATE, no ORM load: this runs once per account on the hot path.
    return _hot().mark.execute(conn, {"b_id": record_id, "b_from": PENDING, "b_status": PUSHING,
                                                "b_started": utcnow(), "b_deadline": deadline}).rowcount == 1


def mark_pushing(db: Database, record_id: int, *, log: Sequence[str] = (), deadline: datetime | None = None) -> bool:
    """pending -> pushing, committed before the driver touches the host; False if the record is not pending.

    deadline: when the host will certainly have stopped this change (the driver enforces it there); stored
    so that a reconcile never judges the record while the change may still land.
    """
    with _write(db) as s:
        done = _mark_pushing_in(s.connection(), record_id, deadline)
        if done and log:
            ex_id = s.connection().execute(text("SELECT execution_id FROM change_record WHERE id = :id"),
                                           {"id": record_id}).scalar_one()
            _append_log(s, ex_id, log)
        return done


def _set_account_status(s: Session, row: ChangeRecord, status: str) -> Account | None:
    acc = s.get(Account, row.account_id) if row.account_id is not None else None
    if acc is not None:
        acc.last_status = status
        s.add(acc)
    return acc


def superseded_error(start: int | None, now: int) -> str:
    """Why a verified record did not become the account's secret."""
    return (f"superseded: the host accepted this record's new secret, but the account moved on in the vault "
            f"(version {start} -> {now}) while it was open; both secrets are kept on this record")


def settle(db: Database, record_id: int, status: str, error: str = "", *, log: Sequence[str] = (),
           then_pushing: int | None = None, then_deadline: datetime | None = None) -> tuple[bool, bool]:
    """settle_as without the final status: (this record settled, next record marked pushing)."""
    settled, marked, _status, _error = settle_as(db, record_id, status, error, log=log, then_pushing=then_pushing,
                                                 then_deadline=then_deadline)
    return settled, marked


def settle_as(db: Database, record_id: int, status: str, error: str = "", *, log: Sequence[str] = (),
              then_pushing: int | None = None, then_deadline: datetime | None = None,
              push_ended: bool = False) -> tuple[bool, bool, str, str]:
    """Settle an open record as success, failed or unverified, in one transaction.

    success: the account's secret becomes the record's new one (old one to history) in the same transaction,
    but only if the account is still at the version the record started from; else `superseded`.
    A final status (success, failed, superseded) releases the record's claim on its account.
    then_pushing: also move the next record of the same host to `pushing` (with then_deadline) in this commit
    (it is committed before that host is touched, as the state machine requires, for one commit instead of two).
    push_ended: the push's end was seen, so nothing of it can land later: the record's deadline is cleared.
    Returns (this record settled, next record marked pushing, the status and error it was settled with).
    """
    if status not in (SUCCESS, FAILED, UNVERIFIED):
        raise ValueError(f"cannot settle a record as {status!r}")
    with _write(db) as s:
        settled, status, error = _settle_in(db, s.connection(), record_id, status, error, log=log, push_ended=push_ended)
        marked = _mark_pushing_in(s.connection(), then_pushing, then_deadline) if then_pushing is not None else False
        return settled, marked, status, error


def _settle_in(db: Database, conn: Connection, record_id: int, status: str, error: str, *, log: Sequence[str] = (),
               push_ended: bool = False) -> tuple[bool, str, str]:
    """settle_as's work inside an open write transaction: (settled, final status, error).

    Statements built once (see _hot), not ORM loads and flushes: the engine settles every account through
    here, and building statements and the ORM's unit of work cost 3-4 ms of CPU per settle, taken from the
    GIL the drivers' threads need. What it writes is what an account edit writes (replace_secret): the old secret to
    history, the version bumped, the new secret sealed to it. The rows are read FOR UPDATE (PostgreSQL;
    SQLite's writer lock is already held) and the record is only moved from the status it was read in.
    """
    hot = _hot()
    row = hot.read_record.execute(conn, {"b_id": record_id}).first()
    if row is None or row["status"] not in OPEN_STATUSES:
        return False, status, error
    now = utcnow()
    acc = None
    if row["account_id"] is not None:
        acc = hot.read_account.execute(conn, {"b_id": row["account_id"]}).first()
    if (status == SUCCESS and acc is not None and row["start_version"] is not None
            and acc["version"] != row["start_version"]):
        status, error = SUPERSEDED, superseded_error(row["start_version"], acc["version"])
    done = hot.settle_ended if push_ended else hot.settle
    if done.execute(conn, {"b_id": record_id, "b_from": row["status"], "b_status": status, "b_error": error,
                           "b_finished": now}).rowcount != 1:
        return False, status, error
    if acc is not None:
        claimed_by = None if status in FINAL_STATUSES and acc["claimed_by"] == row["id"] else acc["claimed_by"]
        changes = {"b_id": acc["id"], "b_status": status, "b_claimed": claimed_by}
        if status == SUCCESS:
            changes.update(_new_secret_columns(db, conn, row, acc, now))
        (hot.account_secret if status == SUCCESS else hot.account_status).execute(conn, changes)
    _append_log(conn, row["execution_id"], log)
    return True, status, error


def _new_secret_columns(db: Database, conn: Connection, row: Mapping[str, Any], acc: Mapping[str, Any], now: datetime) -> dict[str, object]:
    """replace_secret inside a settle (the record's new secret becomes the account's); returns the parameters
    of _hot().account_secret's new secret."""
    new = replace_secret(db, conn, acc, db.unseal_value("change_record", row, "new_secret_enc"),
                         db.unseal_value("change_record", row, "new_passphrase_enc"), when=now, record_id=row["id"])
    return {"b_version": new["version"], "b_secret": new["secret_enc"], "b_phrase": new["passphrase_enc"],
            "b_changed": new["last_changed_at"]}


@dataclass(frozen=True)
class _HotStatements:
    """The statements a run sends per account, built once (building one costs about 0.35 ms of CPU: its
    construction and cache key) and run as HotStatements (storage/hotsql.py: compiled once per database,
    executed on the DBAPI connection of the transaction)."""

    mark: HotStatement
    renew: HotStatement
    read_record: HotStatement
    read_account: HotStatement
    settle: HotStatement
    settle_ended: HotStatement
    account_status: HotStatement
    account_secret: HotStatement


@functools.cache
def _hot() -> _HotStatements:
    record, account = (_table(m) for m in (ChangeRecord, Account))
    b = bindparam
    this_record = (record.c.id == b("b_id"), record.c.status == b("b_from"))
    closed: dict[str, Any] = {"status": b("b_status"), "error": b("b_error"), "finished_at": b("b_finished")}
    account_status: dict[str, Any] = {"last_status": b("b_status"), "claimed_by": b("b_claimed")}
    statements = dict(
        mark=update(record).where(*this_record).values(status=b("b_status"), started_at=b("b_started"),
                                                       deadline_at=b("b_deadline")),
        renew=update(record).where(*this_record).values(deadline_at=b("b_deadline")),
        read_record=sa_select(*(record.c[c] for c in _RECORD_READ)).where(record.c.id == b("b_id")).with_for_update(),
        read_account=sa_select(*(account.c[c] for c in _ACCOUNT_READ)).where(account.c.id == b("b_id")).with_for_update(),
        settle=update(record).where(*this_record).values(**closed),
        settle_ended=update(record).where(*this_record).values(**closed, deadline_at=None),
        account_status=update(account).where(account.c.id == b("b_id")).values(**account_status),
        account_secret=update(account).where(account.c.id == b("b_id")).values(
            **account_status, version=b("b_version"), secret_enc=b("b_secret"), passphrase_enc=b("b_phrase"),
            last_changed_at=b("b_changed")),
    )
    return _HotStatements(**{name: HotStatement(stmt) for name, stmt in statements.items()})


_RECORD_READ = ("id", "execution_id", "status", "account_id", "start_version", "asset_name", "username", "secret_type",
                "new_secret_enc", "new_passphrase_enc")
_ACCOUNT_READ = ("id", "asset_id", "username", "secret_type", "version", "secret_enc", "passphrase_enc",
                 "last_changed_at", "claimed_by")


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]  # set by SQLModel's metaclass


@dataclass(frozen=True)
class SettleStep:
    """A settle for write_steps: the outcome of a push that has ended (see settle_as)."""

    record_id: int
    status: str
    error: str = ""
    push_ended: bool = False


@dataclass(frozen=True)
class PushingStep:
    """pending -> pushing for write_steps (see mark_pushing); with renew, a later deadline for a record that is
    `pushing` and whose host has not been touched yet (its marked value: False when it is not pushing)."""

    record_id: int
    deadline: datetime | None = None
    renew: bool = False


Step = SettleStep | PushingStep
# What write_steps gives back per step: (settled, final status, error) for a settle, marked for a pushing step,
# or the exception that step's own transaction raised.
StepResult = tuple[bool, str, str] | bool | BaseException


def write_steps(db: Database, execution_id: int, steps: Sequence[Step], *, log: Sequence[str] = ()) -> list[StepResult]:
    """Write several record steps of one execution in ONE transaction (one commit, one write lock).

    Each step means what its own settle_as / mark_pushing would; all of them are durable together when this
    returns. If that transaction fails, each step is tried again in a transaction of its own, so one bad step
    fails alone: its slot in the result holds the exception (the others still hold their results).
    """
    for step in steps:
        if isinstance(step, SettleStep) and step.status not in (SUCCESS, FAILED, UNVERIFIED):
            raise ValueError(f"cannot settle a record as {step.status!r}")
    try:
        with _write_conn(db) as conn:
            results = [_step_in(db, conn, step) for step in steps]
            _append_log(conn, execution_id, log)
        return results
    except Exception:  # noqa: BLE001 - which step failed is found out below, one transaction each
        if len(steps) == 1 and not log:
            raise
    alone: list[StepResult] = []
    for i, step in enumerate(steps):
        try:
            with _write_conn(db) as conn:
                alone.append(_step_in(db, conn, step))
                if i == 0:
                    _append_log(conn, execution_id, log)
        except Exception as exc:  # noqa: BLE001 - handed to the step's owner
            alone.append(exc)
    return alone


def _step_in(db: Database, conn: Connection, step: Step) -> tuple[bool, str, str] | bool:
    if isinstance(step, PushingStep):
        if step.renew:
            return _hot().renew.execute(conn, {"b_id": step.record_id, "b_from": PUSHING,
                                               "b_deadline": step.deadline}).rowcount == 1
        return _mark_pushing_in(conn, step.record_id, step.deadline)
    return _settle_in(db, conn, step.record_id, step.status, step.error, push_ended=step.push_ended)


def settle_success(db: Database, record_id: int, *, log: Sequence[str] = ()) -> bool:
    """The host holds the new secret: record success and the account's secret becomes the new one, together."""
    return settle(db, record_id, SUCCESS, log=log)[0]


def settle_failed(db: Database, record_id: int, error: str, *, log: Sequence[str] = ()) -> bool:
    """The host kept the old secret (or was never touched): record failed with why; the account is unchanged."""
    return settle(db, record_id, FAILED, error, log=log)[0]


def settle_unverified(db: Database, record_id: int, error: str, *, log: Sequence[str] = ()) -> bool:
    """Neither secret could be confirmed: both stay on the record for a later reconcile."""
    return settle(db, record_id, UNVERIFIED, error, log=log)[0]


def settle_many_failed(db: Database, record_ids: Iterable[int], error: str, *, log: Sequence[str] = ()) -> int:
    """Settle still-`pending` records as failed in one transaction (never pushed, e.g. cancelled or host down)."""
    ids = list(record_ids)
    if not ids:
        return 0
    with _write(db) as s:
        rows = s.exec(select(ChangeRecord).where(col(ChangeRecord.id).in_(ids), ChangeRecord.status == PENDING)).all()
        now = utcnow()
        for row in rows:
            row.status, row.error, row.finished_at = FAILED, error, now
            acc = _set_account_status(s, row, FAILED)
            if acc is not None and acc.claimed_by == row.id:
                acc.claimed_by = None
            s.add(row)
        if rows:
            _append_log(s, rows[0].execution_id, log)
        return len(rows)


def append_log(db: Database, execution_id: int, lines: Sequence[str]) -> None:
    """Append lines to an execution's log (never a secret)."""
    _log_only(db, execution_id, lines)


def _counts(s: Session, execution_id: int) -> dict[str, int]:
    rows = s.exec(select(ChangeRecord.status, func.count()).where(ChangeRecord.execution_id == execution_id)
                  .group_by(ChangeRecord.status)).all()
    return {status: n for status, n in rows}


def _apply_counts(ex: Execution, counts: dict[str, int]) -> None:
    ex.total = sum(counts.values())
    ex.succeeded = counts.get(SUCCESS, 0)
    ex.failed = counts.get(FAILED, 0) + counts.get(SUPERSEDED, 0)
    # Records still pending or pushing are not confirmed either way: they count as unverified.
    ex.unverified = counts.get(UNVERIFIED, 0) + counts.get(PENDING, 0) + counts.get(PUSHING, 0)


def _derived_status(ex: Execution) -> str:
    if ex.succeeded == ex.total:
        return "success"
    return "partial" if ex.succeeded else "failed"


def recount_execution(db: Database, execution_id: int) -> None:
    """Refresh a finished execution's counts after a reconcile settled some of its records."""
    with _write(db) as s:
        ex = s.get(Execution, execution_id)
        if ex is None or ex.status == RUNNING:
            return
        _apply_counts(ex, _counts(s, execution_id))
        if ex.status in ("success", "partial", "failed"):
            ex.status = _derived_status(ex)
        s.add(ex)


def finish_execution(db: Database, execution_id: int, *, status: str | None = None, cancelled: bool = False,
                     log: Sequence[str] = ()) -> ExecutionInfo:
    """Recompute the counts from the records and close the execution (status derived unless given)."""
    with _write(db) as s:
        ex = s.get(Execution, execution_id)
        if ex is None:
            raise NotFound(f"no execution with id {execution_id}")
        _apply_counts(ex, _counts(s, execution_id))
        if status is None:
            status = "cancelled" if cancelled else _derived_status(ex)
        ex.status = status
        ex.finished_at = utcnow()
        s.add(ex)
        _append_log(s, execution_id, log)
        s.flush()
        return execution_info(ex, with_log=False)


# -- read side -------------------------------------------------------------------------------------
def get_execution(db: Database, execution_id: int, *, with_log: bool = True) -> ExecutionInfo:
    """One execution (with its log by default)."""
    with db.read() as s:
        ex = s.get(Execution, execution_id)
        if ex is None:
            raise NotFound(f"no execution with id {execution_id}")
        return execution_info(ex, with_log=with_log)


def execution_snapshot(db: Database, execution_id: int) -> dict:
    """The frozen task snapshot of an execution (no secrets in it)."""
    with db.read() as s:
        ex = s.get(Execution, execution_id)
        if ex is None:
            raise NotFound(f"no execution with id {execution_id}")
        return dict(ex.snapshot or {})


def running_executions(db: Database) -> list[tuple[int, int | None, int | None, str]]:
    """(id, task_id, pid, hostname) of every execution still marked running."""
    with db.read() as s:
        return [(e.id, e.task_id, e.pid, e.hostname)
                for e in s.exec(select(Execution).where(Execution.status == RUNNING)).all()]


def list_records(db: Database, task: str | None = None, status: str | None = None, *, execution_id: int | None = None,
                 offset: int = 0, limit: int | None = None, scope: frozenset[int] | None = None) -> list[RecordInfo]:
    """Records newest first, optionally of one task (by name), one status, one execution or on assets in scope."""
    from storage.inventory import scoped

    with db.read() as s:
        stmt = scoped(select(ChangeRecord).order_by(col(ChangeRecord.id).desc()), ChangeRecord.asset_id, scope)
        if task:
            stmt = stmt.where(ChangeRecord.task_name == task)
        if status:
            stmt = stmt.where(ChangeRecord.status == status)
        if execution_id is not None:
            stmt = stmt.where(ChangeRecord.execution_id == execution_id)
        stmt = stmt.offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [record_info(r) for r in s.exec(stmt).all()]


def get_record(db: Database, record_id: int) -> RecordInfo:
    """One record, or NotFound."""
    with db.read() as s:
        row = s.get(ChangeRecord, record_id)
        if row is None:
            raise NotFound(f"no change record with id {record_id}")
        return record_info(row)


def record_secrets(db: Database, record_id: int) -> tuple[str | None, str | None]:
    """(old, new) secret of a record, decrypted (retry and the reveal view only)."""
    full = record_secrets_full(db, record_id)
    return full.old, full.new


def record_secrets_full(db: Database, record_id: int) -> RecordSecrets:
    """Old and new secret and key passphrases of a record, decrypted."""
    with db.read() as s:
        row = s.get(ChangeRecord, record_id)
        if row is None:
            raise NotFound(f"no change record with id {record_id}")
        return RecordSecrets(db.unseal(row, "old_secret_enc"), db.unseal(row, "new_secret_enc"),
                             db.unseal(row, "old_passphrase_enc"), db.unseal(row, "new_passphrase_enc"))


def retried_as(db: Database, record_id: int) -> int | None:
    """The id of the record that retried this one, if any."""
    with db.read() as s:
        return s.exec(select(ChangeRecord.id).where(ChangeRecord.retry_of == record_id)
                      .order_by(ChangeRecord.id)).first()


def unsettled_records(db: Database, *, statuses: Sequence[str] = OPEN_STATUSES,
                      ids: Sequence[int] | None = None) -> list[OpenRecord]:
    """Open records (pending, pushing, unverified) that no later retry has taken over, oldest first (only ids)."""
    child = aliased(ChangeRecord)
    with db.read() as s:
        stmt = (select(ChangeRecord, Execution.status, Execution.pid, Execution.hostname)
                .join(Execution, Execution.id == ChangeRecord.execution_id)
                .where(col(ChangeRecord.status).in_(list(statuses)))
                .where(~exists().where(child.retry_of == ChangeRecord.id))
                .order_by(ChangeRecord.id))
        if ids is not None:
            stmt = stmt.where(col(ChangeRecord.id).in_(list(ids)))
        return [OpenRecord(r.id, r.execution_id, st, pid, host or "", r.task_id, r.account_id, r.asset_id, r.asset_name,
                           r.username, r.secret_type, r.status,
                           _aware(r.deadline_at) if r.deadline_at is not None else None)
                for r, st, pid, host in s.exec(stmt).all()]


def anything_unsettled(db: Database) -> bool:
    """Cheap check: is any record open (not taken over by a retry) or any execution left running?"""
    child = aliased(ChangeRecord)
    with db.read() as s:
        if s.exec(select(Execution.id).where(Execution.status == RUNNING).limit(1)).first() is not None:
            return True
        stmt = (select(ChangeRecord.id).where(col(ChangeRecord.status).in_(list(OPEN_STATUSES)))
                .where(~exists().where(child.retry_of == ChangeRecord.id)).limit(1))
        return s.exec(stmt).first() is not None


def later_success(db: Database, record_id: int, account_id: int) -> int | None:
    """The id of a later successful record of the same account, if any."""
    with db.read() as s:
        return s.exec(select(ChangeRecord.id).where(ChangeRecord.account_id == account_id, ChangeRecord.id > record_id,
                                                    ChangeRecord.status == SUCCESS).order_by(ChangeRecord.id)).first()


def latest_records_of_task(db: Database, task_name: str) -> list[RecordInfo]:
    """Each account's latest record in a task (by task name)."""
    with db.read() as s:
        newest = (select(func.max(ChangeRecord.id)).where(ChangeRecord.task_name == task_name,
                                                          col(ChangeRecord.account_id).is_not(None))
                  .group_by(ChangeRecord.account_id))
        rows = s.exec(select(ChangeRecord).where(col(ChangeRecord.id).in_(newest)).order_by(ChangeRecord.id)).all()
        return [record_info(r) for r in rows]


def interrupt_execution(db: Database, execution_id: int, *, log: Sequence[str] = ()) -> ExecutionInfo | None:
    """An execution whose process died: counts recomputed from its records, status interrupted."""
    with db.read() as s:
        ex = s.get(Execution, execution_id)
        if ex is None or ex.status != RUNNING:
            return None
    return finish_execution(db, execution_id, status="interrupted", log=log)


def execution_records_open(db: Database, execution_id: int) -> int:
    """How many records of an execution are still pending or pushing."""
    with db.read() as s:
        return s.exec(select(func.count()).select_from(ChangeRecord).where(
            ChangeRecord.execution_id == execution_id, col(ChangeRecord.status).in_([PENDING, PUSHING]))).one()


def account_info(db: Database, account_id: int) -> AccountInfo:
    """One account by id (no secret), or NotFound."""
    from storage.inventory import _account_info
    from storage.tables import Asset

    with db.read() as s:
        acc = s.get(Account, account_id)
        if acc is None:
            raise NotFound(f"no account with id {account_id}")
        asset = s.get(Asset, acc.asset_id)
        return _account_info(acc, asset.name if asset else "")


def task_locks(db: Database) -> list[tuple[int, str, datetime]]:
    """(task id, holder, expires_at) of every task lock row, live or expired."""
    from storage.tables import TaskLock

    with db.read() as s:
        return [(lk.task_id, lk.holder, lk.expires_at) for lk in s.exec(select(TaskLock)).all()]


def record_deadline(db: Database, record_id: int) -> datetime | None:
    """When the host has certainly stopped the record's change (None: its push ended, or it never started)."""
    with db.read() as s:
        row = s.get(ChangeRecord, record_id)
        if row is None:
            raise NotFound(f"no change record with id {record_id}")
        return _aware(row.deadline_at) if row.deadline_at is not None else None
