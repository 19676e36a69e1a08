"""A task run as its options ask: only inside its change windows, stopping new accounts at the window's end,
then automatic retries of the accounts that failed (each retry a new execution and new records, as today).

The engine itself is unchanged: the window's end reaches it as its cancel event (in-flight accounts finish
and settle, the rest are never pushed), and retries go through its retry entry point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core.context import Context
from core.engine import retry_records, run_task
from core.errors import KeyturnError
from core.events import EventCallback
from core.windows import WindowGuard, in_window, parse_windows
from storage import drift as store
from storage import executions as rec
from core.errors import NotFound
from storage.types import ExecutionInfo


class OutsideWindow(KeyturnError):
    """The task may not start now: none of its change windows holds."""


@dataclass
class PolicyRun:
    """The executions of one run with its retries, and why it stopped early (if it did)."""

    executions: list[ExecutionInfo] = field(default_factory=list)
    stopped: str = ""  # "" | "window closed" | "cancelled"

    @property
    def last(self) -> ExecutionInfo | None:
        """The newest execution."""
        return self.executions[-1] if self.executions else None


def _clock() -> datetime:
    return datetime.now(timezone.utc)


def failed_to_retry(ctx: Context, execution_id: int) -> list[int]:
    """Records of an execution that failed (the host kept its old secret) and were not retried yet."""
    return [r.id for r in rec.list_records(ctx.db, execution_id=execution_id)
            if r.status == rec.FAILED and rec.retried_as(ctx.db, r.id) is None and r.account_id is not None]


def run_with_options(ctx: Context, task_name: str, *, trigger: str = "manual", respect_windows: bool = True,
                     cancel: threading.Event | None = None, on_event: EventCallback | None = None,
                     clock: Callable[[], datetime] = _clock, poll: float = 5.0,
                     retry_delay_seconds: float | None = None, on_workers: bool = False) -> PolicyRun:
    """Run a task now, honouring its windows (when respect_windows) and its automatic retries.

    Raises OutsideWindow when no window holds at the start. retry_delay_seconds overrides the task's delay
    (tests and the command line's "retry now"); the wait ends early on cancel. on_workers: the first run is
    queued for `keyturn worker` processes and followed here (a cancel, or the window's end, asks them to
    start no further account); automatic retries still run in this process.
    """
    from storage.tasks import get_task

    try:
        spec = get_task(ctx.db, task_name)
        from core.scopes import task_visible

        task_visible(ctx, spec.id, task_name)  # a task outside the acting operator's scope is not there
    except NotFound:
        from core.errors import InputError

        raise InputError(f"task: no task named {task_name!r}") from None
    assert spec.id is not None
    opts = store.get_task_options(ctx.db, spec.id)
    windows = parse_windows(opts.windows) if respect_windows else []
    if not in_window(windows, clock()):
        raise OutsideWindow(f"task {task_name}: outside its change windows ({'; '.join(opts.windows)})")
    cancel = cancel or threading.Event()
    result = PolicyRun()
    guard = WindowGuard(windows, cancel, poll=poll, clock=clock)
    with guard.active():
        if on_workers:
            from core.workers import follow, queue_run

            queued = queue_run(ctx, task_name, trigger=trigger, on_event=on_event)
            result.executions.append(follow(ctx, queued, on_event=on_event, cancel=cancel))
        else:
            result.executions.append(run_task(ctx, task_name, trigger=trigger, cancel=cancel, on_event=on_event))
        delay = opts.retry_delay_minutes * 60.0 if retry_delay_seconds is None else retry_delay_seconds
        for _attempt in range(opts.retries):
            if cancel.is_set():
                break
            ids = failed_to_retry(ctx, result.executions[-1].id)
            if not ids:
                break
            if delay > 0 and cancel.wait(delay):
                break
            if not in_window(windows, clock()):
                guard.tripped = True
                break
            result.executions.append(retry_records(ctx, ids, cancel=cancel, on_event=on_event, task_name=task_name))
    if guard.tripped:
        result.stopped = "window closed"
    elif cancel.is_set():
        result.stopped = "cancelled"
    return result


# -- for the scheduler ------------------------------------------------------------------------------------
def window_open(ctx: Context, task_id: int, now: datetime) -> bool:
    """Whether a scheduled slot of the task may start at now (no windows, or one holds)."""
    return in_window(parse_windows(store.get_task_options(ctx.db, task_id).windows), now)


def effective_due(ctx: Context, task_id: int, due: datetime, now: datetime) -> datetime:
    """When a due slot can really start: at once inside a window, else at the next opening."""
    from core.windows import next_opening

    windows = parse_windows(store.get_task_options(ctx.db, task_id).windows)
    if not windows or in_window(windows, max(due, now)):
        return due
    return next_opening(windows, max(due, now)) or max(due, now)


def scheduled_run(ctx: Context, task_name: str, *, trigger: str = "schedule", cancel: threading.Event | None = None,
                  on_event: EventCallback | None = None, on_workers: bool = False) -> ExecutionInfo:
    """The scheduler's runner: the task's windows and retries applied; returns the last execution.

    on_workers: hand the run to `keyturn worker` processes; if this scheduler's machine dies, they finish it.
    """
    result = run_with_options(ctx, task_name, trigger=trigger, respect_windows=True, cancel=cancel, on_event=on_event,
                              on_workers=on_workers)
    assert result.last is not None
    return result.last
