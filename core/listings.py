"""What the acting person may list: the inventory, records, history and overview, limited to their scope.

Both front ends list through here (never through storage directly), so an operator limited to node subtrees
(`keyturn operator scope`) sees the same in the app as on the command line. The limit is applied in SQL by
the storage queries (one sub-select on asset_node), so pages and counts stay exact and cheap.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core.context import Context
from core.scopes import asset_in_scope, scope_filter, visible_tasks
from storage import inventory as inv
from storage import queries as q
from storage.types import AccountInfo, AssetInfo, ExecutionInfo, RecordInfo

__all__ = ["asset_choices", "attention_accounts", "count_assets", "count_executions", "count_records", "execution_detail",
           "list_accounts", "list_assets", "list_executions", "list_records", "overview_stats", "records_by_id",
           "retryable_records", "task_names", "task_rows"]


def list_assets(ctx: Context, *, node: str | None = None, search: str = "", offset: int = 0,
                limit: int | None = None, drift: bool = False) -> list[AssetInfo]:
    """Assets in the acting operator's scope, sorted by name (drift: only those with a drifted account)."""
    return inv.list_assets(ctx.db, node=node, search=search, offset=offset, limit=limit, scope=scope_filter(ctx),
                           drift=drift)


def count_assets(ctx: Context, *, node_ids: set[int] | None = None, search: str = "", drift: bool = False) -> int:
    """How many assets in scope match."""
    return q.count_assets(ctx.db, node_ids=node_ids, search=search, scope=scope_filter(ctx), drift=drift)


def list_accounts(ctx: Context, *, asset: str | None = None, offset: int = 0,
                  limit: int | None = None) -> list[AccountInfo]:
    """Accounts on assets in scope, sorted by asset then user; of one asset outside the scope: NotFound, as for
    an asset that does not exist."""
    if asset:
        asset_in_scope(ctx, asset)
    return inv.list_accounts(ctx.db, asset=asset, offset=offset, limit=limit, scope=scope_filter(ctx))


def list_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "",
                 offset: int = 0, limit: int = 100) -> list[RecordInfo]:
    """One page of change records on assets in scope, newest first."""
    return q.list_records(ctx.db, status=status, task=task, search=search, offset=offset, limit=limit,
                          scope=scope_filter(ctx))


def records_by_id(ctx: Context, *, task: str | None = None, status: str | None = None,
                  execution_id: int | None = None, limit: int | None = None) -> list[RecordInfo]:
    """Change records on assets in scope, newest id first (the command line's `records list`)."""
    from storage import executions as rec

    return rec.list_records(ctx.db, task=task, status=status, execution_id=execution_id, limit=limit,
                            scope=scope_filter(ctx))


def count_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "") -> int:
    """How many records in scope match."""
    return q.count_records(ctx.db, status=status, task=task, search=search, scope=scope_filter(ctx))


def retryable_records(ctx: Context, *, status: str | None = None, task: str | None = None, search: str = "",
                      limit: int = 10_000) -> dict[str, list[int]]:
    """Retryable records in scope, by task."""
    return q.retryable_records(ctx.db, status=status, task=task, search=search, limit=limit, scope=scope_filter(ctx))


def list_executions(ctx: Context, *, task: str | None = None, offset: int = 0, limit: int = 200) -> list[ExecutionInfo]:
    """Executions with a record in scope, newest first."""
    return q.list_executions(ctx.db, task=task, offset=offset, limit=limit, scope=scope_filter(ctx))


def count_executions(ctx: Context, *, task: str | None = None) -> int:
    """How many executions have a record in scope."""
    return q.count_executions(ctx.db, task=task, scope=scope_filter(ctx))


def execution_detail(ctx: Context, execution_id: int) -> tuple[ExecutionInfo, list[RecordInfo]]:
    """One execution and its records in scope; LookupError when it has none there.

    For a scoped operator the counts are those of the records in scope (storage does that in SQL) and the log
    keeps only the lines about an asset in scope (visible_log)."""
    scope = scope_filter(ctx)
    info, records = q.execution_detail(ctx.db, execution_id, scope=scope)
    if scope is not None:
        info = replace(info, log=visible_log(info.log, {r.asset_name for r in records}))
    return info, records


def _log_subject(line: str) -> str:
    # "<time> <asset>: ..." or "<time> reconcile: <asset>: ..." -> the asset; anything else -> "".
    _, _, rest = line.partition(" ")
    if rest.startswith("reconcile: "):
        rest = rest[len("reconcile: "):]
    subject, sep, _ = rest.partition(": ")
    return subject if sep and " " not in subject else ""


def visible_log(log: str, assets: set[str]) -> str:
    """The lines of an execution log about one of assets; lines about the whole run (its start and its
    counts) or about any other asset are left out (not counted either), and a last line says so. Default deny:
    a line whose subject is not an asset in scope is never shown."""
    lines = log.splitlines()
    kept = [line for line in lines if _log_subject(line) in assets]
    if len(kept) < len(lines):
        kept.append("(lines about the whole run or about assets outside your scope are not shown)")
    return "\n".join(kept)


def overview_stats(ctx: Context, now: datetime, days: int = 30) -> q.OverviewStats:
    """The Overview's counts, limited to scope."""
    return q.overview_stats(ctx.db, now, days, scope=scope_filter(ctx), task_ids=visible_tasks(ctx))


def attention_accounts(ctx: Context, limit: int = 200) -> list[q.AttentionRow]:
    """Accounts in scope whose newest change failed or is unverified."""
    return q.attention_accounts(ctx.db, limit, scope=scope_filter(ctx))


def task_rows(ctx: Context, *, search: str = "", offset: int = 0, limit: int = 500) -> list[q.TaskRow]:
    """Tasks the acting operator may see (core.scopes.visible_tasks) with their target counts and last run."""
    return q.task_rows(ctx.db, search=search, offset=offset, limit=limit, task_ids=visible_tasks(ctx))


def task_names(ctx: Context) -> list[str]:
    """Names of the tasks the acting operator may see, sorted."""
    return q.task_names(ctx.db, task_ids=visible_tasks(ctx))


def asset_choices(ctx: Context, *, search: str = "", limit: int = 200) -> list[tuple[str, str]]:
    """(name, address) of assets in scope matching search: the task form's asset picker."""
    return q.asset_choices(ctx.db, search=search, limit=limit, scope=scope_filter(ctx))
