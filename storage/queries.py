"""Read-only, paged queries for the app's tables and the overview; SQL aggregates, never whole tables.

Every list here takes offset/limit so a screen loads one page, and every count is one SQL aggregate
on an indexed column: the app must stay quick with 100,000 records and 50,000 accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, case, distinct, func, or_, text
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from storage import likes
from storage.db import Database
from storage.inventory import Scope, in_scope, scoped
from storage.tables import (
    Account, Asset, AssetNode, ChangeRecord, ChangeSecretTask, Execution, HeartbeatResult, Node, Operator, TaskAsset,
    TaskNode,
)
from storage.types import ExecutionInfo, RecordInfo

SETTLED_BAD = ("failed", "unverified")
RECORD_STATUSES = ("pending", "pushing", "success", "failed", "unverified", "superseded")


@dataclass(frozen=True)
class DayCount:
    """Successful and failed (or unverified) changes on one UTC day."""

    day: str  # YYYY-MM-DD
    success: int
    failed: int


@dataclass(frozen=True)
class OverviewStats:
    """The numbers the Overview shows."""

    tasks: int
    periodic_tasks: int
    active_tasks: int
    assets: int
    assets_covered: int
    accounts: int
    exec_7d_success: int
    exec_7d_failed: int
    exec_30d_success: int
    exec_30d_failed: int
    running: int
    days: tuple[DayCount, ...]


@dataclass(frozen=True)
class TaskRow:
    """One line of the task list."""

    id: int
    name: str
    usernames: tuple[str, ...]
    assets: int
    nodes: int
    secret_strategy: str
    secret_type: str
    interval_hours: int | None
    cron: str | None
    active: bool
    next_run_at: datetime | None
    last_started_at: datetime | None
    last_status: str

    @property
    def schedule(self) -> str:
        """'every 24h', the cron line, or '-'."""
        if self.interval_hours:
            return f"every {self.interval_hours}h"
        return self.cron or "-"


@dataclass(frozen=True)
class AttentionRow:
    """An account whose newest change failed or could not be verified."""

    record_id: int
    asset_name: str
    username: str
    task_name: str
    status: str
    error: str
    created_at: datetime


def _execution_info(e: Execution, with_log: bool = False) -> ExecutionInfo:
    return ExecutionInfo(
        id=e.id, task_id=e.task_id, task_name=e.task_name, trigger=e.trigger, status=e.status, operator=e.operator,
        started_at=e.started_at, finished_at=e.finished_at, total=e.total, succeeded=e.succeeded, failed=e.failed,
        unverified=e.unverified, mail_error=e.mail_error, log=e.log if with_log else "",
    )


def _record_info(r: ChangeRecord) -> RecordInfo:
    return RecordInfo(
        id=r.id, execution_id=r.execution_id, task_id=r.task_id, task_name=r.task_name, account_id=r.account_id,
        asset_id=r.asset_id, asset_name=r.asset_name, username=r.username, secret_type=r.secret_type,
        status=r.status, error=r.error, attempt=r.attempt, retry_of=r.retry_of, created_at=r.created_at,
        started_at=r.started_at, finished_at=r.finished_at,
    )


def _count(session: Session, stmt) -> int:  # type: ignore[no-untyped-def]
    return int(session.exec(stmt).one() or 0)


# -- overview --------------------------------------------------------------------------------------
def _executions_in(scope: Scope):  # type: ignore[no-untyped-def]
    """A where-clause for executions with a record on an asset of scope (None when not limited)."""
    if scope is None:
        return None
    return select(ChangeRecord.id).where(ChangeRecord.execution_id == Execution.id,
                                         in_scope(ChangeRecord.asset_id, scope)).exists()


def _scope_counts(session: Session, infos: list[ExecutionInfo], scope: Scope) -> list[ExecutionInfo]:
    """infos with counts (and a settled status) of their records in scope only, so a History row tells a
    scoped operator nothing about accounts outside it; one grouped query for the page."""
    if scope is None or not infos:
        return infos
    counts: dict[int, dict[str, int]] = {i.id: {} for i in infos}
    rows = session.exec(select(ChangeRecord.execution_id, ChangeRecord.status, func.count())
                        .where(col(ChangeRecord.execution_id).in_(list(counts)), in_scope(ChangeRecord.asset_id, scope))
                        .group_by(ChangeRecord.execution_id, ChangeRecord.status)).all()
    for eid, status, n in rows:
        counts[eid][status] = n
    out = []
    for info in infos:
        c = counts[info.id]
        total, ok = sum(c.values()), c.get("success", 0)
        failed = c.get("failed", 0) + c.get("superseded", 0)
        unverified = c.get("unverified", 0) + c.get("pending", 0) + c.get("pushing", 0)
        status = info.status
        if status in ("success", "partial", "failed") and total:  # as storage.executions derives it
            status = "success" if ok == total else "partial" if ok else "failed"
        out.append(replace(info, total=total, succeeded=ok, failed=failed, unverified=unverified, status=status))
    return out


def _assets_covered(session: Session, scope: Scope = None) -> int:
    # A task covers its own assets and every asset in or below its nodes; one SQL statement, no Python loop.
    # The distinct task node paths are few (nodes, not tasks), so expand those to subnodes first and only
    # then touch asset_node; joining per task multiplied rows by the number of tasks.
    sql = text(
        """
        SELECT COUNT(DISTINCT asset_id) FROM (
            SELECT asset_id FROM task_asset
            UNION ALL
            SELECT an.asset_id FROM asset_node an WHERE an.node_id IN (
                SELECT n.id FROM node n
                  JOIN (SELECT DISTINCT node.path AS p FROM task_node JOIN node ON node.id = task_node.node_id) t
                    ON n.path = t.p OR n.path LIKE replace(replace(replace(t.p, '!', '!!'), '%', '!%'), '_', '!_') || '/%' ESCAPE '!'
            )
        ) AS covered
        """ + ("" if scope is None else
               "WHERE asset_id IN (SELECT asset_id FROM asset_node WHERE node_id IN :scope)")
    )
    if scope is None:
        return int(session.connection().execute(sql).scalar() or 0)
    sql = sql.bindparams(bindparam("scope", expanding=True))
    return int(session.connection().execute(sql, {"scope": sorted(scope)}).scalar() or 0)


def _utc_day(session: Session, column):  # type: ignore[no-untyped-def]
    """The UTC day (YYYY-MM-DD) of a datetime column, in SQL: SQLite keeps UTC text, PostgreSQL a timestamptz."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def overview_stats(db: Database, now: datetime, days: int = 30, *, scope: Scope = None,
                   task_ids: frozenset[int] | None = None) -> OverviewStats:
    """Counts of tasks, coverage, executions in the last 7/30 days and changes per day over `days` days.

    With a scope, assets, accounts, coverage, executions and changes count only what lies in it (tasks are
    definitions, not assets: they count whole)."""
    since7 = now - timedelta(days=7)
    since30 = now - timedelta(days=30)
    first_day = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    ok = col(Execution.status) == "success"
    bad = col(Execution.status).in_(("failed", "partial", "interrupted"))
    with db.read() as s:
        task_counts = select(
            func.count(ChangeSecretTask.id),
            func.coalesce(func.sum(case((or_(col(ChangeSecretTask.interval_hours).is_not(None),
                                             col(ChangeSecretTask.cron).is_not(None)), 1), else_=0)), 0),
            func.coalesce(func.sum(case((col(ChangeSecretTask.active) == True, 1), else_=0)), 0),  # noqa: E712
        )
        if task_ids is not None:
            task_counts = task_counts.where(col(ChangeSecretTask.id).in_(sorted(task_ids)))
        tasks, periodic, active = s.exec(task_counts).one()
        assets = _count(s, scoped(select(func.count()).select_from(Asset), Asset.id, scope))
        accounts = _count(s, scoped(select(func.count()).select_from(Account), Account.asset_id, scope))
        in_scope_exec = _executions_in(scope)
        execs = select(
            func.coalesce(func.sum(case((and_(ok, col(Execution.started_at) >= since7), 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(bad, col(Execution.started_at) >= since7), 1), else_=0)), 0),
            func.coalesce(func.sum(case((ok, 1), else_=0)), 0),
            func.coalesce(func.sum(case((bad, 1), else_=0)), 0),
        ).where(col(Execution.started_at) >= since30)
        running_stmt = select(func.count()).select_from(Execution).where(Execution.status == "running")
        if in_scope_exec is not None:
            execs, running_stmt = execs.where(in_scope_exec), running_stmt.where(in_scope_exec)
        e7s, e7f, e30s, e30f = s.exec(execs).one()
        running = _count(s, running_stmt)
        day = _utc_day(s, ChangeRecord.created_at)
        per_day: dict[str, list[int]] = {}
        for status in ("success", *SETTLED_BAD):
            # One indexed range scan per status on ix_record_status_created.
            per_status = select(day, func.count()).where(ChangeRecord.status == status,
                                                         col(ChangeRecord.created_at) >= first_day)
            rows = s.exec(scoped(per_status, ChangeRecord.asset_id, scope).group_by(day)).all()
            for d, n in rows:
                slot = per_day.setdefault(str(d), [0, 0])
                slot[0 if status == "success" else 1] += int(n)
        covered = _assets_covered(s, scope)
    series = []
    for i in range(days):
        d = (first_day + timedelta(days=i)).strftime("%Y-%m-%d")
        success, failed = per_day.get(d, [0, 0])
        series.append(DayCount(d, success, failed))
    return OverviewStats(
        tasks=int(tasks), periodic_tasks=int(periodic), active_tasks=int(active), assets=assets,
        assets_covered=covered, accounts=accounts, exec_7d_success=int(e7s), exec_7d_failed=int(e7f),
        exec_30d_success=int(e30s), exec_30d_failed=int(e30f), running=running, days=tuple(series),
    )


def attention_accounts(db: Database, limit: int = 200, *, scope: Scope = None) -> list[AttentionRow]:
    """Accounts whose newest change record failed or is unverified (and is not ignored), newest first."""
    from storage.tables import RecordFlag

    newer = ChangeRecord.__table__.alias("newer")
    rows: list[ChangeRecord] = []
    with db.read() as s:
        # One query per status, each walking ix_record_status_created from the newest entry and stopping at
        # `limit` hits; the merge below keeps the newest `limit`. (One query over both statuses sorted every
        # failed and unverified record first: most of a second at a million records.)
        for status in SETTLED_BAD:
            stmt = (
                select(ChangeRecord)
                .where(ChangeRecord.status == status)
                # Keep only the newest record of each account: a later success clears the alarm.
                .where(~select(newer.c.id).where(newer.c.account_id == ChangeRecord.account_id,
                                                  newer.c.id > ChangeRecord.id).exists())
                # An operator's `records ignore` takes a record off this list (reversible with unignore).
                .where(~select(RecordFlag.record_id).where(RecordFlag.record_id == ChangeRecord.id,
                                                           RecordFlag.ignored == True).exists())  # noqa: E712
                .order_by(col(ChangeRecord.created_at).desc(), col(ChangeRecord.id).desc())
                .limit(limit)
            )
            rows += s.exec(scoped(stmt, ChangeRecord.asset_id, scope)).all()
    rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return [AttentionRow(r.id, r.asset_name, r.username, r.task_name, r.status, r.error, r.created_at)
            for r in rows[:limit]]


# -- tasks -----------------------------------------------------------------------------------------
def task_rows(db: Database, *, search: str = "", offset: int = 0, limit: int = 500,
              task_ids: frozenset[int] | None = None) -> list[TaskRow]:
    """Tasks sorted by name with their target counts and last run (only task_ids, when given)."""
    last = select(Execution.started_at, Execution.status).where(Execution.task_id == ChangeSecretTask.id) \
        .order_by(col(Execution.started_at).desc()).limit(1).correlate(ChangeSecretTask)
    n_assets = select(func.count()).select_from(TaskAsset).where(TaskAsset.task_id == ChangeSecretTask.id) \
        .correlate(ChangeSecretTask).scalar_subquery()
    n_nodes = select(func.count()).select_from(TaskNode).where(TaskNode.task_id == ChangeSecretTask.id) \
        .correlate(ChangeSecretTask).scalar_subquery()
    last_at = last.with_only_columns(Execution.started_at).scalar_subquery()
    last_status = last.with_only_columns(Execution.status).scalar_subquery()
    with db.read() as s:
        stmt = select(ChangeSecretTask, n_assets, n_nodes, last_at, last_status).order_by(ChangeSecretTask.name)
        if search:
            stmt = stmt.where(col(ChangeSecretTask.name).like(likes.contains(search), escape=likes.ESCAPE))
        if task_ids is not None:
            stmt = stmt.where(col(ChangeSecretTask.id).in_(sorted(task_ids)))
        rows = s.exec(stmt.offset(offset).limit(limit)).all()
        out = []
        for t, na, nn, la, ls in rows:
            out.append(TaskRow(t.id, t.name, tuple(t.usernames or ()), int(na), int(nn), t.secret_strategy,
                               t.secret_type, t.interval_hours, t.cron, t.active, t.next_run_at, la, ls or ""))
        return out


def task_names(db: Database, *, task_ids: frozenset[int] | None = None) -> list[str]:
    """Every task name (only of task_ids, when given), sorted."""
    with db.read() as s:
        stmt = select(ChangeSecretTask.name).order_by(ChangeSecretTask.name)
        if task_ids is not None:
            stmt = stmt.where(col(ChangeSecretTask.id).in_(sorted(task_ids)))
        return list(s.exec(stmt).all())


def operator_names(db: Database) -> list[str]:
    """Every operator name, sorted (task recipients are operators)."""
    with db.read() as s:
        return list(s.exec(select(Operator.name).order_by(Operator.name)).all())


# -- executions ------------------------------------------------------------------------------------
def count_executions(db: Database, *, task: str | None = None, scope: Scope = None) -> int:
    """How many executions (of one task when given; with a record in scope when given)."""
    with db.read() as s:
        stmt = select(func.count()).select_from(Execution)
        if scope is not None:
            stmt = stmt.where(_executions_in(scope))
        if task:
            stmt = stmt.where(Execution.task_name == task)
        return _count(s, stmt)


def list_executions(db: Database, *, task: str | None = None, offset: int = 0, limit: int = 200,
                    scope: Scope = None) -> list[ExecutionInfo]:
    """Executions newest first, without their logs (only those with a record in scope, when given)."""
    with db.read() as s:
        stmt = select(Execution).order_by(col(Execution.started_at).desc(), col(Execution.id).desc())
        if scope is not None:
            stmt = stmt.where(_executions_in(scope))
        if task:
            stmt = stmt.where(Execution.task_name == task)
        # Do not load log texts of a whole page: they can be long.
        stmt = stmt.options(defer(Execution.log))
        return _scope_counts(s, [_execution_info(e) for e in s.exec(stmt.offset(offset).limit(limit)).all()], scope)


def execution_detail(db: Database, execution_id: int, *, scope: Scope = None) -> tuple[ExecutionInfo, list[RecordInfo]]:
    """One execution with its log, and its records ordered by asset then account (those in scope, when given)."""
    with db.read() as s:
        e = s.get(Execution, execution_id)
        if e is None or (scope is not None and not s.exec(select(Execution.id).where(
                Execution.id == execution_id, _executions_in(scope))).first()):
            raise LookupError(f"no execution {execution_id}")
        recs = s.exec(scoped(select(ChangeRecord).where(ChangeRecord.execution_id == execution_id), ChangeRecord.asset_id, scope)
                      .order_by(ChangeRecord.asset_name, ChangeRecord.username, ChangeRecord.id)).all()
        return _scope_counts(s, [_execution_info(e, with_log=True)], scope)[0], [_record_info(r) for r in recs]


# -- records ---------------------------------------------------------------------------------------
def drifted_accounts_subquery():  # type: ignore[no-untyped-def]
    """Ids of the accounts whose newest heartbeat is not ok (the host no longer takes the vault's secret)."""
    newest = select(func.max(HeartbeatResult.id)).group_by(HeartbeatResult.account_id)
    return select(HeartbeatResult.account_id).where(col(HeartbeatResult.id).in_(newest),
                                                    HeartbeatResult.status != "ok")


def drifted_assets_subquery():  # type: ignore[no-untyped-def]
    """Ids of the assets holding an account whose newest heartbeat is not ok."""
    return select(Account.asset_id).where(col(Account.id).in_(drifted_accounts_subquery()))


def _record_filter(stmt, status: str | None, task: str | None, search: str, scope: Scope = None):  # type: ignore[no-untyped-def]
    stmt = scoped(stmt, ChangeRecord.asset_id, scope)
    if status == "attention":
        stmt = stmt.where(col(ChangeRecord.status).in_(SETTLED_BAD))
    elif status == "drift":
        stmt = stmt.where(col(ChangeRecord.account_id).in_(drifted_accounts_subquery()))
    elif status:
        stmt = stmt.where(ChangeRecord.status == status)
    if task:
        stmt = stmt.where(ChangeRecord.task_name == task)
    if search:
        like, esc = likes.contains(search), likes.ESCAPE
        stmt = stmt.where(or_(col(ChangeRecord.asset_name).like(like, escape=esc), col(ChangeRecord.username).like(like, escape=esc),
                              col(ChangeRecord.error).like(like, escape=esc), col(ChangeRecord.task_name).like(like, escape=esc)))
    return stmt


def count_records(db: Database, *, status: str | None = None, task: str | None = None, search: str = "",
                  scope: Scope = None) -> int:
    """How many records match the filters."""
    with db.read() as s:
        return _count(s, _record_filter(select(func.count()).select_from(ChangeRecord), status, task, search, scope))


def list_records(db: Database, *, status: str | None = None, task: str | None = None, search: str = "",
                 offset: int = 0, limit: int = 100, scope: Scope = None) -> list[RecordInfo]:
    """One page of records, newest first. status may be a record status, 'attention' (failed+unverified) or
    'drift' (records of accounts whose newest heartbeat is not ok)."""
    with db.read() as s:
        stmt = _record_filter(select(ChangeRecord), status, task, search, scope) \
            .order_by(col(ChangeRecord.created_at).desc(), col(ChangeRecord.id).desc()).offset(offset).limit(limit)
        return [_record_info(r) for r in s.exec(stmt).all()]


def retryable_records(db: Database, *, status: str | None = None, task: str | None = None, search: str = "",
                      limit: int = 10_000, scope: Scope = None) -> dict[str, list[int]]:
    """Failed and unverified records matching the filters, not retried yet and each its account's newest record,
    grouped by task name (an account is retried once, from where it stands now)."""
    child = ChangeRecord.__table__.alias("child")
    newer = ChangeRecord.__table__.alias("newer")
    with db.read() as s:
        stmt = _record_filter(select(ChangeRecord.task_name, ChangeRecord.id), status, task, search, scope) \
            .where(col(ChangeRecord.status).in_(SETTLED_BAD)) \
            .where(~select(child.c.id).where(child.c.retry_of == ChangeRecord.id).exists()) \
            .where(~select(newer.c.id).where(newer.c.account_id == ChangeRecord.account_id,
                                              newer.c.id > ChangeRecord.id).exists()) \
            .order_by(ChangeRecord.id).limit(limit)
        out: dict[str, list[int]] = {}
        for name, rid in s.exec(stmt).all():
            out.setdefault(name, []).append(rid)
        return out


# -- inventory -------------------------------------------------------------------------------------
def count_assets(db: Database, *, node_ids: set[int] | None = None, search: str = "", scope: Scope = None,
                 drift: bool = False) -> int:
    """How many assets match (node_ids: already expanded to subnodes; drift: see list_assets)."""
    with db.read() as s:
        stmt = scoped(select(func.count(distinct(Asset.id))).select_from(Asset), Asset.id, scope)
        if drift:
            stmt = stmt.where(col(Asset.id).in_(drifted_assets_subquery()))
        if node_ids is not None:
            stmt = stmt.where(col(Asset.id).in_(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(node_ids))))
        if search:
            like, esc = likes.contains(search), likes.ESCAPE
            stmt = stmt.where(or_(col(Asset.name).like(like, escape=esc), col(Asset.address).like(like, escape=esc)))
        return _count(s, stmt)


def node_subtree_ids(db: Database, path: str) -> set[int]:
    """Ids of the node at path and every node below it."""
    with db.read() as s:
        prefix = likes.below_prefix(path)
        rows = s.exec(select(Node.id).where(or_(Node.path == path, and_(
            col(Node.path).like(likes.below(path), escape=likes.ESCAPE),
            func.substr(Node.path, 1, len(prefix)) == prefix)))).all()
        return set(rows)


def account_count_by_asset(db: Database, asset_ids: list[int]) -> dict[int, int]:
    """Number of accounts on each of the given assets."""
    if not asset_ids:
        return {}
    with db.read() as s:
        rows = s.exec(select(Account.asset_id, func.count()).where(col(Account.asset_id).in_(asset_ids))
                      .group_by(Account.asset_id)).all()
        return {a: int(n) for a, n in rows}


def asset_choices(db: Database, *, search: str = "", limit: int = 200, scope: Scope = None) -> list[tuple[str, str]]:
    """(name, address) of assets matching search (in scope, when given), sorted by name: the task form's picker."""
    with db.read() as s:
        stmt = scoped(select(Asset.name, Asset.address).order_by(Asset.name), Asset.id, scope)
        if search:
            like, esc = likes.contains(search), likes.ESCAPE
            stmt = stmt.where(or_(col(Asset.name).like(like, escape=esc), col(Asset.address).like(like, escape=esc)))
        return [(n, a) for n, a in s.exec(stmt.limit(limit)).all()]
