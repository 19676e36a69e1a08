"""Unattended periodic rotation: find due tasks, claim each due slot once across schedulers, run, report.

A slot is claimed before the run by moving the task's next_run_at from the value seen to the next slot
after now, in one conditional UPDATE: of several schedulers on one database only one wins the slot, and a
scheduler that was down for several slots runs the task once, not once per missed slot. The engine's task
lock still guards against a manual run going on at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol

from core.config import DEFAULT_WORKERS
from core.context import Context
from core.errors import KeyturnError
from core.schedule import ScheduleError, next_runs
from storage.scheduling import ScheduledTask, claim_slot, scheduled_task, scheduled_tasks
from storage.tables import utcnow
from storage.types import ExecutionInfo

log = logging.getLogger("keyturn.scheduler")

Clock = Callable[[], datetime]


class Runner(Protocol):
    """What runs one task: core.engine.run_task, or a stand-in in unit tests."""

    def __call__(self, ctx: Context, task_name: str, *, trigger: str = ..., cancel: threading.Event | None = ...,
                 on_event=...) -> ExecutionInfo: ...  # noqa: ANN001


@dataclass(frozen=True)
class RunOutcome:
    """What became of one claimed slot."""

    task_id: int
    task_name: str
    due_at: datetime
    execution: ExecutionInfo | None = None
    error: str = ""  # the run could not start or crashed
    mail_error: str = ""


def default_runner(*, on_workers: bool = False) -> Runner:
    """core.engine.run_task, imported late so the scheduler loads (and its unit tests run) without it.

    on_workers: each run is queued for `keyturn worker` processes and followed (see core.workers).
    """
    from core.runs import scheduled_run  # the engine's run_task with the task's windows and retries

    if on_workers:
        import functools

        return functools.partial(scheduled_run, on_workers=True)  # type: ignore[return-value]
    return scheduled_run  # type: ignore[return-value]


def settle_leftovers(ctx: Context) -> None:
    """Settle records a killed process left open (and free its stale task locks) before scheduling again."""
    try:
        from core.reconcile import reconcile_if_needed

        summary = reconcile_if_needed(ctx)
    except Exception:  # noqa: BLE001 - the scheduler still runs; `keyturn reconcile` can be run by hand
        log.exception("reconcile at start failed")
        return
    if not summary.nothing_to_do:
        log.info("%s", summary.text())


def next_slot(task: ScheduledTask, now: datetime) -> datetime:
    """The first slot of the task strictly after now. Interval slots stay on the grid of start or first due."""
    anchor = task.start_at or task.next_run_at
    runs = next_runs(task.interval_hours, task.cron, after=now, count=1, anchor=anchor)
    if not runs:
        raise ScheduleError(f"task {task.name}: its schedule never fires (cron {task.cron!r}); edit the task")
    return runs[0]


def list_scheduled(ctx: Context) -> list[ScheduledTask]:
    """Every active periodic task with its schedule."""
    return scheduled_tasks(ctx.db)


def due_tasks(ctx: Context, now: datetime) -> list[ScheduledTask]:
    """Active periodic tasks whose slot is at or before now (due at t, not at t - 1s)."""
    from core.runs import window_open  # a slot outside the task's change windows waits for the next opening

    return [t for t in list_scheduled(ctx) if t.due_at(now) <= now and window_open(ctx, t.id, now)]


def next_due_at(ctx: Context, now: datetime) -> datetime | None:
    """The earliest slot of any active periodic task (may be in the past), None when nothing is scheduled."""
    slots = [t.due_at(now) for t in scheduled_tasks(ctx.db)]
    return min(slots) if slots else None


def claim(ctx: Context, task: ScheduledTask, now: datetime) -> bool:
    """Take the task's due slot for this scheduler: True for exactly one of several schedulers."""
    if task.due_at(now) > now:
        return False
    return claim_slot(ctx.db, task.id, task.next_run_at, next_slot(task, now))


def _after_run(ctx: Context, task: ScheduledTask, claimed_next: datetime, finished: datetime) -> None:
    # A run longer than the period must not leave a slot that already passed: that would start it again at
    # once. Only move the slot we set ourselves (an edit of the task during the run wins).
    if claimed_next > finished:
        return
    current = scheduled_task(ctx.db, task.id)
    if current is None or current.next_run_at != claimed_next:
        return
    claim_slot(ctx.db, task.id, claimed_next, next_slot(task, finished))


def run_claimed(ctx: Context, task: ScheduledTask, claimed_next: datetime, *, runner: Runner,
                cancel: threading.Event | None, clock: Clock, notify: bool = True) -> RunOutcome:
    """Run one claimed task with trigger "schedule", then mail its report; never raises."""
    due = task.next_run_at or claimed_next
    started = time.monotonic()
    log.info("task %s: scheduled run starting (slot %s)", task.name, due.isoformat(timespec="seconds"))
    try:
        info = runner(ctx, task.name, trigger="schedule", cancel=cancel)
    except KeyturnError as exc:
        log.warning("task %s: scheduled run not started: %s", task.name, exc)
        return RunOutcome(task.id, task.name, due, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken task must not stop the scheduler
        log.exception("task %s: scheduled run crashed: %s", task.name, type(exc).__name__)
        return RunOutcome(task.id, task.name, due, error=f"{type(exc).__name__}: {exc}")
    finally:
        try:
            _after_run(ctx, task, claimed_next, clock())
        except Exception:  # noqa: BLE001 - the claimed slot is still valid, only maybe too early
            log.exception("task %s: could not move the next slot after the run", task.name)
    log.info("task %s: execution %s finished: %s; %s succeeded, %s failed, %s unverified of %s in %.1fs",
             task.name, info.id, info.status, info.succeeded, info.failed, info.unverified, info.total,
             time.monotonic() - started)
    mail_error = ""
    if notify:
        try:
            from core.notify import send_execution_report

            mail_error = send_execution_report(ctx, info.id) or ""
        except Exception as exc:  # noqa: BLE001 - a report never fails the rotation
            mail_error = f"report not sent: {type(exc).__name__}: {exc}"
            log.warning("task %s: execution %s: %s", task.name, info.id, mail_error)
    return RunOutcome(task.id, task.name, due, execution=info, mail_error=mail_error)


class Scheduler:
    """Claims due slots and runs them in a bounded pool of worker threads, until stopped."""

    def __init__(self, ctx: Context, *, runner: Runner | None = None, clock: Clock = utcnow,
                 poll_seconds: float | None = None, max_workers: int = DEFAULT_WORKERS, notify: bool = True,
                 on_workers: bool = False) -> None:
        self.ctx = ctx
        self.runner = runner
        # Runs handed to `keyturn worker` processes: the worker that finishes a run mails its report.
        self.on_workers = on_workers
        self.clock = clock
        self.poll_seconds = poll_seconds if poll_seconds is not None else ctx.settings.scheduler_poll_seconds
        self.notify = notify
        self.cancel = threading.Event()  # handed to every run: set on shutdown, the engine settles safely
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and by a run ending
        self.max_workers = max(1, max_workers)
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="keyturn-run")
        self._running: dict[int, Future[RunOutcome]] = {}
        self._lock = threading.Lock()
        self.outcomes: list[RunOutcome] = []
        self.skipped: list[RunOutcome] = []  # due tasks whose schedule cannot be computed
        self._broken: dict[int, tuple[object, ...]] = {}  # such tasks, by the schedule that failed

    @property
    def stopping(self) -> bool:
        """Whether stop() was called."""
        return self._stop.is_set()

    def _runner(self) -> Runner:
        if self.runner is None:
            self.runner = default_runner(on_workers=self.on_workers)
        return self.runner

    def tick(self, now: datetime | None = None) -> list[Future[RunOutcome]]:
        """Claim every due task not already running here and start it; returns the started runs."""
        now = now or self.clock()
        started: list[Future[RunOutcome]] = []
        from core.heartbeat import claim_due_heartbeats, run_heartbeat_safely

        for name in claim_due_heartbeats(self.ctx, now):  # heartbeats change nothing: no task lock, no report
            self._pool.submit(run_heartbeat_safely, self.ctx, name)
        for task in due_tasks(self.ctx, now):
            if self._stop.is_set():
                break
            with self._lock:
                # A run that outlasts its period: leave the slot due, it is taken once this run ends.
                if task.id in self._running:
                    continue
            if self._broken.get(task.id) == (task.cron, task.interval_hours, task.next_run_at):
                continue  # reported once already; an edit of the task changes the key and it is looked at again
            try:
                nxt = next_slot(task, now)
            except ScheduleError as exc:
                self._broken[task.id] = (task.cron, task.interval_hours, task.next_run_at)
                # Skipped and reported; every other due task still runs.
                log.error("task %s: skipped: %s", task.name, exc)
                self._report(RunOutcome(task.id, task.name, task.due_at(now), error=f"skipped: {exc}"))
                continue
            if not claim_slot(self.ctx.db, task.id, task.next_run_at, nxt):
                log.debug("task %s: slot taken by another scheduler", task.name)
                continue
            future = self._pool.submit(run_claimed, self.ctx, task, nxt, runner=self._runner(), cancel=self.cancel,
                                       clock=self.clock, notify=self.notify and not self.on_workers)
            with self._lock:
                self._running[task.id] = future
            future.add_done_callback(partial(self._done, task.id))
            started.append(future)
        return started

    def _report(self, outcome: RunOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)
            self.skipped.append(outcome)

    def _done(self, task_id: int, future: Future[RunOutcome]) -> None:
        with self._lock:
            if self._running.get(task_id) is future:
                del self._running[task_id]
            if not future.cancelled() and future.exception() is None:
                self.outcomes.append(future.result())
        self._wake.set()

    @property
    def running(self) -> list[int]:
        """Ids of the tasks running now."""
        with self._lock:
            return list(self._running)

    def _sleep_seconds(self) -> float:
        """Seconds until the next poll: the poll interval, or less when a slot of an idle task is sooner."""
        now = self.clock()
        running = set(self.running)
        # A task still running past its next slot is looked at again when its run ends (that wakes us), so
        # its overdue slot must not make the loop spin meanwhile.
        from core.heartbeat import next_heartbeat_due
        from core.runs import effective_due

        slots = [effective_due(self.ctx, t.id, t.due_at(now), now) for t in scheduled_tasks(self.ctx.db) if t.id not in running and t.id not in self._broken]
        slots += [s for s in (next_heartbeat_due(self.ctx),) if s is not None]
        upcoming = min(slots) if slots else None
        wait = self.poll_seconds
        if upcoming is not None:
            # Wake early for a slot sooner than the next poll (never spin: at least a tenth of a second).
            wait = min(wait, max(0.1, (upcoming - now).total_seconds()))
        return wait

    def serve(self) -> None:
        """Run until stop(): claim due slots every poll (or sooner when a slot is nearer), then shut down."""
        log.info("scheduler started (poll every %gs, at most %d runs at once)", self.poll_seconds,
                 self.max_workers)
        try:
            while not self._stop.is_set():
                # Cleared before looking, so a run that ends meanwhile (its slot may be due again) wakes us.
                self._wake.clear()
                try:
                    self.tick()
                    wait = self._sleep_seconds()
                except Exception:  # noqa: BLE001 - a database hiccup must not end the scheduler
                    log.exception("scheduler: could not check for due tasks")
                    wait = self.poll_seconds
                self._wake.wait(wait)
        finally:
            self.shutdown()

    def run_once(self, now: datetime | None = None) -> list[RunOutcome]:
        """Claim and run what is due at now, wait for those runs, and return their outcomes."""
        try:
            ran = [f.result() for f in self.tick(now)]
            return [*self.skipped, *ran]
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Stop claiming and cancel running executions (safe to call from a signal handler)."""
        self._stop.set()
        self.cancel.set()
        self._wake.set()

    def shutdown(self) -> None:
        """Wait for running executions to settle and release the worker threads."""
        running = self.running
        if running:
            log.info("scheduler stopping: waiting for %d running execution(s)", len(running))
        self._pool.shutdown(wait=True)
        log.info("scheduler stopped")


def run_due(ctx: Context, now: datetime | None = None, *, runner: Runner | None = None,
            cancel: threading.Event | None = None, clock: Clock | None = None,
            max_workers: int = DEFAULT_WORKERS, notify: bool = True) -> list[RunOutcome]:
    """Run every task due at now (default: the clock), wait for the runs, and return their outcomes."""
    clock = clock or ((lambda: now) if now is not None else utcnow)  # type: ignore[assignment,return-value]
    sched = Scheduler(ctx, runner=runner, clock=clock, max_workers=max_workers, notify=notify)
    if cancel is not None:
        sched.cancel = cancel
    return sched.run_once(now)


__all__ = ["RunOutcome", "Runner", "Scheduler", "claim", "due_tasks", "next_due_at", "next_slot", "run_claimed",
           "run_due"]
