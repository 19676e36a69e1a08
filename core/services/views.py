"""Read-only views the screens and commands list (overview, tasks, history, records, audit counts).

Plain reads: no permission beyond browsing, no audit. Each takes the Context like every use case, so a front
end never holds the database.
"""

from __future__ import annotations

from datetime import datetime

from core.context import Context
from storage import queries
from storage.audit import count_events as _count_events
from storage.executions import anything_unsettled as _anything_unsettled
from storage.queries import RECORD_STATUSES, AttentionRow, OverviewStats, TaskRow
from storage.types import ExecutionInfo, RecordInfo

__all__ = ["RECORD_STATUSES", "AttentionRow", "OverviewStats", "TaskRow", "anything_unsettled", "asset_choices",
           "attention_accounts", "count_events", "count_executions", "count_records", "execution_detail",
           "list_executions", "list_records", "operator_names", "open_records", "overview_stats", "records_of", "retryable_records",
           "task_names", "task_rows"]


def overview_stats(ctx: Context, now: datetime, days: int = 30) -> OverviewStats:
    """Counts of tasks, coverage, recent executions and changes per day."""
    return queries.overview_stats(ctx.db, now, days=days)


def attention_accounts(ctx: Context, limit: int = 200) -> list[AttentionRow]:
    """Accounts whose newest change failed or is unverified (and not ignored), newest first."""
    return queries.attention_accounts(ctx.db, limit=limit)


def task_rows(ctx: Context, *, search: str = "", offset: int = 0, limit: int = 500) -> list[TaskRow]:
    """Tasks with their target counts and last run."""
    return queries.task_rows(ctx.db, search=search, offset=offset, limit=limit)


def task_names(ctx: Context) -> list[str]:
    """Every task name, sorted."""
    return queries.task_names(ctx.db)


def operator_names(ctx: Context) -> list[str]:
    """Every operator name, sorted."""
    return queries.operator_names(ctx.db)


def asset_choices(ctx: Context, *, search: str = "", limit: int = 200) -> list[tuple[str, str]]:
    """(name, address) of assets matching search: the task form's asset picker."""
    return queries.asset_choices(ctx.db, search=search, limit=limit)


def count_executions(ctx: Context, *, task: str | None = None) -> int:
    """How many executions (of one task when given)."""
    return queries.count_executions(ctx.db, task=task)


def list_executions(ctx: Context, *, task: str | None = None, offset: int = 0, limit: int = 200) -> list[ExecutionInfo]:
    """Executions newest first, without their logs."""
    return queries.list_executions(ctx.db, task=task, offset=offset, limit=limit)


def execution_detail(ctx: Context, execution_id: int) -> tuple[ExecutionInfo, list[RecordInfo]]:
    """One execution with its log and its records."""
    return queries.execution_detail(ctx.db, execution_id)


def count_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "") -> int:
    """How many records match the filters."""
    return queries.count_records(ctx.db, status=status, task=task, search=search)


def list_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "",
                 offset: int = 0, limit: int = 100) -> list[RecordInfo]:
    """One page of records, newest first."""
    return queries.list_records(ctx.db, status=status, task=task, search=search, offset=offset, limit=limit)


def retryable_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "",
                      limit: int = 10_000) -> dict[str, list[int]]:
    """Failed and unverified records matching the filters that a retry would take, by task."""
    return queries.retryable_records(ctx.db, status=status, task=task, search=search, limit=limit)


def records_of(ctx: Context, *, task: str | None = None, status: str | None = None, execution_id: int | None = None,
               limit: int | None = None) -> list[RecordInfo]:
    """Records newest first (of one task, status or execution), only those on assets in the operator's scope."""
    from core.scopes import filter_in_scope
    from storage.executions import list_records as _list

    return filter_in_scope(ctx, _list(ctx.db, task=task, status=status, execution_id=execution_id, limit=limit),
                           lambda r: r.asset_id)


def open_records(ctx: Context) -> list:  # type: ignore[type-arg]
    """Records still open (pending, pushing, unverified) that no retry has taken over, oldest first."""
    from storage.executions import unsettled_records

    return list(unsettled_records(ctx.db))


def count_events(ctx: Context) -> int:
    """How many events the audit trail holds."""
    return _count_events(ctx.db)


def anything_unsettled(ctx: Context) -> bool:
    """Whether any record or execution was left open (a reconcile has work)."""
    return _anything_unsettled(ctx.db)
