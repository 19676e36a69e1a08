"""Read-only views the screens and commands list (overview, tasks, history, records, audit counts); the reads a
scope limits come from core.listings and are re-exported here.

Plain reads: no permission beyond browsing, no audit. Each takes the Context like every use case, so a front
end never holds the database.
"""

from __future__ import annotations


from core.context import Context
from storage import queries
from storage.executions import anything_unsettled as _anything_unsettled
from storage.queries import RECORD_STATUSES, AttentionRow, OverviewStats, TaskRow
from core.listings import (  # scope-aware reads (security owns them); re-exported so screens import one place
    asset_choices, attention_accounts, count_executions, count_records, execution_detail, list_executions,
    list_records, overview_stats, records_by_id, retryable_records, task_names, task_rows,
)

__all__ = ["RECORD_STATUSES", "AttentionRow", "OverviewStats", "TaskRow", "anything_unsettled", "asset_choices",
           "attention_accounts", "count_events", "count_executions", "count_records", "execution_detail",
           "list_executions", "list_records", "operator_names", "open_records", "overview_stats", "records_by_id",
           "retryable_records", "task_names", "task_rows"]


def operator_names(ctx: Context) -> list[str]:
    """Every operator name, sorted."""
    return queries.operator_names(ctx.db)











def open_records(ctx: Context) -> list:  # type: ignore[type-arg]
    """Records still open (pending, pushing, unverified) that no retry has taken over, oldest first."""
    from storage.executions import unsettled_records

    return list(unsettled_records(ctx.db))


def count_events(ctx: Context) -> int:
    """How many events of the audit trail the acting person may read (core.audit: a scope limits them)."""
    from core.audit import count_events as counted

    return counted(ctx)


def anything_unsettled(ctx: Context) -> bool:
    """Whether any record or execution was left open (a reconcile has work)."""
    return _anything_unsettled(ctx.db)
