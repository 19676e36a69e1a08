"""Runs handed to `keyturn worker` processes: queue a run as work units, work units off, follow a run.

Queueing does what an in-process run does up to the first host (task lock, execution, every new secret
committed on a `pending` record with its account's claim), then splits the records by asset into work units
and moves the task lock to the workers, all before any host is touched.

A worker takes units under a lease it renews every third of the lease. Each unit runs through the engine's
own per-asset code (one privileged connection, the same write-ahead steps per account), so an account is
changed exactly as in-process. A unit whose lease expired (its worker was SIGKILLed or its machine went
off) is taken by another worker, which first settles the records the dead one left `pushing` by probing
(new secret, then old, as reconcile does) and, when neither settles it, waits for the push's deadline
(DESIGN.md point 5) before judging; then it pushes the accounts still `pending`. Two workers never push one
account: a record moves pending -> pushing by a conditional UPDATE, so only one of them can take it, and a
taken-over record is only probed, never pushed again. A worker that finds its lease taken over stops
touching that unit at once.

The worker that finishes an execution's last unit finishes the execution: counts, status, dependency
steps, the audit event, the task lock released, and the report mailed, as an in-process run does.

Test hook (inert unless set): KEYTURN_TEST_PUSH_LOG=FILE makes a worker append "start|end WORKER ACCOUNT_ID
EPOCH" lines around each account it changes, so a test can check that no two workers changed one account at
the same time. Nothing else reads it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from core.config import DEFAULT_LEASE_SECONDS, DEFAULT_POLL_SECONDS
from core.context import Context
from core.engine import (
    LOG_FLUSH_SECONDS, Job, _audit, _load_task, _Mark, _new_secret, _Planned, _public_line_of, _Run, task_snapshot,
)
from core.errors import InputError, KeyturnError, UnsafeSetupError
from core.events import AccountSettled, EventCallback, ExecutionFinished, ExecutionStarted
from core.ssh import Timeouts
from storage import executions as rec
from storage import workunits as units
from storage.inventory import NotFound
from storage.locks import release_task_lock, renew_task_lock
from storage.tables import utcnow
from storage.types import ExecutionInfo, TaskSpec

log = logging.getLogger("keyturn.worker")

FOLLOW_POLL_SECONDS = 0.5
SETTLE_LOOKBACK = timedelta(seconds=30)


# -- the master key ------------------------------------------------------------------------------------
def verify_master_key(ctx: Context, worker_id: str) -> None:
    """Refuse to work unless this machine's master key opens the vault's key check value.

    Opening the context already checks it; a worker checks again when it starts (and the message says what
    to do), because a worker is the process most often started on a machine set up by hand.
    """
    if not units.key_matches(ctx.db):
        raise UnsafeSetupError(
            f"worker {worker_id}: the master key in {ctx.home} does not match the vault (its key check value "
            "does not verify); copy the vault's master.key to this machine (mode 0600, owner only) and start again")


# -- queueing ------------------------------------------------------------------------------------------
def queue_run(ctx: Context, task_name: str, *, trigger: str = "cli", on_event: EventCallback | None = None) -> int:
    """Queue a run of a task over all its targets for the workers; returns the execution id.

    Everything an in-process run commits before the first host is committed here; no host is touched.
    """
    from core.targets import preview

    spec = _load_task(ctx, task_name)
    planned = [_Planned(t.account_id, t.asset_id, t.asset_name, t.username, t.secret_type, t.privileged,
                        _new_secret(spec)) for t in preview(ctx, spec).targets]
    return _queue(ctx, spec, trigger, planned, on_event)


def queue_retry(ctx: Context, record_ids: list[int], *, task_name: str | None = None,
                on_event: EventCallback | None = None) -> int:
    """Queue a retry of failed or unverified records for the workers (as `retry` plans it: an unverified record
    re-pushes its candidate, a failed one gets a fresh secret); returns the execution id."""
    from core.engine import plan_retry

    spec, planned = plan_retry(ctx, record_ids, task_name=task_name)
    return _queue(ctx, spec, "retry", planned, on_event)


def queue_retry_failed(ctx: Context, task_name: str, *, on_event: EventCallback | None = None) -> int:
    """Queue a retry of every account whose latest record in the task failed or stayed unverified."""
    from core.engine import failed_record_ids

    return queue_retry(ctx, failed_record_ids(ctx, task_name), task_name=task_name, on_event=on_event)


def _queue(ctx: Context, spec: TaskSpec, trigger: str, planned: list[_Planned], on_event: EventCallback | None) -> int:
    """Commit the execution and planned's records with their new secrets, split them into units, hand the
    task lock to the workers; no host is touched."""
    assert spec.id is not None
    from core.engine import _check_and_lock

    holder = _check_and_lock(ctx, spec, planned, "queue")
    db = ctx.db
    handed_over = False
    execution_id: int | None = None
    try:
        snapshot = task_snapshot(spec, {"secure_mode": ctx.settings.secure_mode, "workers": True})
        execution_id = rec.create_execution(db, task_id=spec.id, task_name=spec.name, trigger=trigger,
                                            operator=ctx.operator or "", snapshot=snapshot, pid=os.getpid(),
                                            hostname=socket.gethostname())
        _audit(ctx, "execution.start", execution_id, {"task": spec.name, "trigger": trigger, "accounts": len(planned),
                                                      "workers": True})
        assets = {p.asset_id for p in planned}
        started = ExecutionStarted(execution_id, task_name=spec.name, trigger=trigger, total=len(planned),
                                   assets=len(assets))
        _call(on_event, started)
        ids, skipped = rec.add_claimed_records(db, execution_id, [
            rec.PendingItem(p.account_id, p.secret.secret, p.secret.passphrase, p.retry_of, p.attempt) for p in planned
        ], log=[_line(started.text() + "; queued for workers")])
        by_asset: dict[int, list[int]] = defaultdict(list)
        names: dict[int, str] = {}
        for rid, p in zip(ids, planned):
            if rid in skipped:
                continue  # settled `failed` already (another run holds the account); follow() reports it
            by_asset[p.asset_id].append(rid)
            names[p.asset_id] = p.asset_name
        work = [(asset_id, names[asset_id], rids) for asset_id, rids in by_asset.items()]
        units.queue_units(db, execution_id, spec.id, work, previous_holder=holder)
        handed_over = True
        if not work:  # nothing for the workers (every account was busy): finish here, report mailed as by a worker
            finish_if_last(ctx, execution_id, on_event=on_event)
        return execution_id
    except BaseException:
        if execution_id is not None and not handed_over:
            try:
                rec.finish_execution(db, execution_id, status="interrupted")
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    finally:
        if not handed_over:
            try:
                release_task_lock(db, spec.id, holder)
            except SQLAlchemyError:
                pass


def finish_if_last(ctx: Context, execution_id: int, *, on_event: EventCallback | None = None,
                   notify: bool = True) -> ExecutionInfo | None:
    """Finish the execution when all its units are done; exactly one caller does it (None for the others)."""
    if not units.claim_finish(ctx.db, execution_id):
        return None
    run = units.run_info(ctx.db, execution_id)
    lines: list[str] = []

    def emit(event) -> None:  # type: ignore[no-untyped-def]
        lines.append(_line(event.text()))
        _call(on_event, event)

    from core.dependencies import run_for_execution  # dependent updates follow successful changes; never raises

    run_for_execution(ctx, run.task_id, execution_id, emit)
    info = rec.finish_execution(ctx.db, execution_id, cancelled=run.cancel_requested, log=lines)
    duration = (utcnow() - _aware(info.started_at)).total_seconds() if info.started_at else 0.0
    finished = ExecutionFinished(execution_id, status=info.status, total=info.total, succeeded=info.succeeded,
                                 failed=info.failed, unverified=info.unverified, duration_s=duration)
    _call(on_event, finished)
    rec.append_log(ctx.db, execution_id, [_line(finished.text())])
    _audit(ctx, "execution.finish", execution_id, {"task": info.task_name, "status": info.status, "total": info.total,
                                                    "succeeded": info.succeeded, "failed": info.failed,
                                                    "unverified": info.unverified, "workers": True})
    if run.task_id is not None:
        try:
            release_task_lock(ctx.db, run.task_id, run.lock_holder)
        except SQLAlchemyError:
            pass  # it expires; nobody renews it any more
    if notify:
        try:
            from core.notify import send_execution_report

            send_execution_report(ctx, execution_id)
        except Exception as exc:  # noqa: BLE001 - a report never fails the rotation
            log.warning("execution %s: report not sent: %s", execution_id, type(exc).__name__)
    return rec.get_execution(ctx.db, execution_id, with_log=False)


# -- following a queued run ----------------------------------------------------------------------------
def follow(ctx: Context, execution_id: int, *, on_event: EventCallback | None = None,
           cancel: threading.Event | None = None, poll: float = FOLLOW_POLL_SECONDS) -> ExecutionInfo:
    """Report a run's settled accounts as they come (by polling) until the execution has finished.

    Works for any execution, on any machine sharing the database: queued for workers or run in-process.

    cancel: once set, the workers are asked to start no account not yet pushed; following goes on until
    the accounts in flight settled and the execution finished.
    """
    from core.scopes import scope_of

    visible = scope_of(ctx)  # an operator limited to node subtrees sees only the accounts there
    if visible is not None:
        from core.listings import execution_detail

        try:
            execution_detail(ctx, execution_id)  # with no record in the scope the execution is not there
        except LookupError:
            raise NotFound(f"no execution with id {execution_id}") from None
    seen: set[int] = set()
    after = None
    asked = False
    while True:
        if cancel is not None and cancel.is_set() and not asked:
            units.request_cancel(ctx.db, execution_id)
            asked = True
        info = rec.get_execution(ctx.db, execution_id, with_log=False)  # read first: no settle is missed below
        # A settle's time is taken before its commit, and on another machine's clock: look back a while.
        since = after - SETTLE_LOOKBACK if after is not None else None
        for rid, asset_id, asset, user, status, error, finished_at in units.settled_since(ctx.db, execution_id, since):
            after = finished_at if after is None else max(after, finished_at)
            if rid not in seen and (visible is None or asset_id in visible):
                seen.add(rid)
                _call(on_event, AccountSettled(execution_id, asset=asset, username=user, record_id=rid,
                                               status=status, error=error))
        if info.status != rec.RUNNING:
            if visible is not None:  # the counts of the records in the scope, as History shows them
                from core.listings import execution_detail

                info = replace(execution_detail(ctx, execution_id)[0], log="")
            duration = ((_aware(info.finished_at) - _aware(info.started_at)).total_seconds()
                        if info.finished_at and info.started_at else 0.0)
            _call(on_event, ExecutionFinished(execution_id, status=info.status, total=info.total,
                                              succeeded=info.succeeded, failed=info.failed,
                                              unverified=info.unverified, duration_s=duration))
            return info
        time.sleep(poll)


# -- the worker ----------------------------------------------------------------------------------------
@dataclass
class _Held:
    """A unit this worker works on, and what its lease renewer tells the unit's thread."""

    unit: units.ClaimedUnit
    cancel: threading.Event = field(default_factory=threading.Event)  # no new account (cancel, or lease lost)
    lost: threading.Event = field(default_factory=threading.Event)  # another worker holds the unit now


class _SharedLog:
    """The log lines of one execution in this worker, written with the next settle at most every 2 s.

    One buffer per execution, not per unit: every append rewrites the execution row, and twenty units
    flushing their own buffers every 2 s made the settles queue on that row's lock.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[str] = []
        self.flushed = time.monotonic()
        self.units = 0  # units of the execution in hand here; the last one to end flushes what is left


class _UnitRun(_Run):
    """The engine's per-asset run, fenced by the unit's lease: once it is lost, nothing more is written."""

    def __init__(self, ctx: Context, spec, execution_id: int, held: _Held, worker_id: str,  # type: ignore[no-untyped-def]
                 on_event: EventCallback | None, shared: _SharedLog) -> None:
        super().__init__(ctx, spec, execution_id, cancel=held.cancel, on_event=on_event)
        self.held = held
        self.worker_id = worker_id
        self.shared = shared
        self._push_log = os.environ.get("KEYTURN_TEST_PUSH_LOG", "")

    def emit(self, event) -> None:  # type: ignore[no-untyped-def,override]
        with self.shared.lock:
            self.shared.lines.append(_line(event.text()))
        _call(self.on_event, event)

    def drain(self, *, force: bool = False) -> list[str]:
        now = time.monotonic()
        with self.shared.lock:
            if not force and now - self.shared.flushed < LOG_FLUSH_SECONDS:
                return []
            lines, self.shared.lines, self.shared.flushed = self.shared.lines, [], now
        return lines

    def change_one(self, driver, asset, job: Job, *, pushing_deadline: float | None = None,  # type: ignore[no-untyped-def,override]
                   then_pushing: int | None = None) -> _Mark | None:
        if self.held.lost.is_set():
            return None  # the unit is another worker's now: it settles this record
        self._window("start", job)
        try:
            return super().change_one(driver, asset, job, pushing_deadline=pushing_deadline, then_pushing=then_pushing)
        finally:
            self._window("end", job)

    def _fail_unpushed(self, jobs, error: str) -> None:  # type: ignore[no-untyped-def,override]
        if not self.held.lost.is_set():
            super()._fail_unpushed(jobs, error)

    def emit_line(self, text: str) -> None:
        """A line for the execution log that no event stands for."""
        with self.shared.lock:
            self.shared.lines.append(_line(text))

    def _window(self, edge: str, job: Job) -> None:
        if self._push_log:
            with open(self._push_log, "a") as fh:
                fh.write(f"{edge} {self.worker_id} {job.account_id} {time.time():.6f}\n")


class Worker:
    """Takes work units of queued runs and works them off, `concurrency` units at a time."""

    def __init__(self, ctx: Context, *, worker_id: str | None = None, concurrency: int | None = None,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 on_event: EventCallback | None = None) -> None:
        if lease_seconds < 1:
            raise InputError(f"--lease: must be at least 1 second, got {lease_seconds:g}")
        self.ctx = ctx
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = max(1, concurrency or ctx.settings.concurrency)
        self.lease = timedelta(seconds=lease_seconds)
        self.poll = poll_seconds
        self.on_event = on_event
        self.units_done = 0
        self._held: dict[int, _Held] = {}
        self._logs: dict[int, _SharedLog] = {}  # by execution id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()

    def stop(self) -> None:
        """Take no new unit; the units in hand are finished (safe from a signal handler's thread)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Whether stop() was called."""
        return self._stop.is_set()

    def serve(self, *, once: bool = False) -> int:
        """Work units until stop() (or, with once, until none is left to take); returns how many were done."""
        verify_master_key(self.ctx, self.worker_id)
        renewer = threading.Thread(target=self._renew_loop, daemon=True, name="keyturn-lease")
        renewer.start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="keyturn-unit")
        running: set[Future[None]] = set()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                running = {f for f in running if not f.done()}
                took = False
                while len(running) < self.concurrency and not self._stop.is_set():
                    try:
                        unit = units.claim_unit(self.ctx.db, self.worker_id, self.lease)
                    except SQLAlchemyError as exc:
                        log.warning("worker %s: cannot take work: %s", self.worker_id, _reason(exc))
                        break
                    if unit is None:
                        break
                    took = True
                    held = _Held(unit)
                    with self._lock:
                        self._held[unit.id] = held
                    fut = pool.submit(self._work, held)
                    fut.add_done_callback(lambda _f: self._wake.set())
                    running.add(fut)
                if once and not took and not any(not f.done() for f in running):
                    break
                self._wake.wait(self.poll)
        finally:
            pool.shutdown(wait=True)
            self._stop.set()
            renewer.join(timeout=5)
        return self.units_done

    # -- leases --------------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            stopping = self._stop.wait(interval)
            with self._lock:
                held = list(self._held.values())
            if stopping and not held:
                return
            self._renew(held)

    def _renew(self, held: list[_Held]) -> None:
        tasks: dict[int, str] = {}
        for h in held:
            try:
                if not units.renew_lease(self.ctx.db, h.unit, self.worker_id, self.lease):
                    if not h.lost.is_set():
                        log.warning("worker %s: unit %s (%s) was taken over by another worker; leaving it",
                                    self.worker_id, h.unit.id, h.unit.asset_name)
                    h.lost.set()
                    h.cancel.set()
                    continue
                if units.cancel_requested(self.ctx.db, h.unit.execution_id):
                    h.cancel.set()
            except SQLAlchemyError as exc:  # a busy or restarting server: the next tick retries before the lease ends
                log.warning("worker %s: lease renewal failed: %s", self.worker_id, _reason(exc))
                continue
            if h.unit.task_id is not None:
                tasks[h.unit.task_id] = h.unit.task_holder
        for task_id, holder in tasks.items():
            try:
                renew_task_lock(self.ctx.db, task_id, holder)
            except SQLAlchemyError:
                pass

    # -- one unit ------------------------------------------------------------------------------------
    def _work(self, held: _Held) -> None:
        unit = held.unit
        try:
            self._work_unit(held)
            if held.lost.is_set() or not units.finish_unit(self.ctx.db, unit, self.worker_id):
                return
            self.units_done += 1
            finish_if_last(self.ctx, unit.execution_id, on_event=self.on_event)
        except Exception as exc:  # noqa: BLE001 - the unit stays running; its lease expires and another worker takes it
            log.exception("worker %s: unit %s (%s) stopped: %s", self.worker_id, unit.id, unit.asset_name,
                          type(exc).__name__)
        finally:
            with self._lock:
                self._held.pop(unit.id, None)

    def _work_unit(self, held: _Held) -> None:
        from storage.tasks import get_task_by_id

        unit, db = held.unit, self.ctx.db
        if units.cancel_requested(db, unit.execution_id):
            held.cancel.set()
        open_records = rec.unsettled_records(db, ids=list(unit.record_ids), statuses=(rec.PENDING, rec.PUSHING))
        if unit.task_id is None:
            rec.settle_many_failed(db, [r.id for r in open_records if r.status == rec.PENDING],
                                   "the task was deleted before a worker took this asset", log=[_line(self._took(unit))])
            return
        spec = get_task_by_id(db, unit.task_id)
        with self._lock:
            shared = self._logs.setdefault(unit.execution_id, _SharedLog())
            shared.units += 1
        run = _UnitRun(self.ctx, spec, unit.execution_id, held, self.worker_id, self.on_event, shared)
        try:
            self._run_unit(run, held, open_records)
        finally:
            with self._lock:
                shared.units -= 1
                last_here = shared.units == 0
                if last_here:
                    self._logs.pop(unit.execution_id, None)
            rec.append_log(db, unit.execution_id, run.drain(force=last_here))
        if run.db_error:
            raise KeyturnError(f"the database cannot be written ({run.db_error})")

    def _run_unit(self, run: _UnitRun, held: _Held, open_records: list[rec.OpenRecord]) -> None:
        unit, db = held.unit, self.ctx.db
        run.emit_line(self._took(unit))
        for r in open_records:
            if r.status == rec.PUSHING:
                self._settle_left_open(run, held, r)
        jobs = []
        for r in open_records:
            if r.status != rec.PENDING:
                continue
            job = _job_of(self.ctx, run.spec.name, r)
            if job is None:
                rec.settle_failed(db, r.id, "the account or asset was removed from the inventory; not pushed")
                continue
            jobs.append(job)
        if jobs and not held.lost.is_set():
            run.work_asset(jobs)

    def _took(self, unit: units.ClaimedUnit) -> str:
        note = f"worker {self.worker_id} took {unit.asset_name} (attempt {unit.attempt})"
        return note + (": its previous worker's lease expired" if unit.taken_over else "")

    def _settle_left_open(self, run: _UnitRun, held: _Held, r: rec.OpenRecord) -> None:
        """A record the previous holder left `pushing`: probe new, then old; judge only after its push deadline."""
        from core.reconcile import probe_record

        timeouts = Timeouts.from_settings(self.ctx.settings)
        while True:
            status, error = probe_record(self.ctx, r, timeouts)
            if status == rec.SUCCESS or not r.waiting():
                break
            assert r.deadline_at is not None
            wait = (r.deadline_at - utcnow()).total_seconds()
            run.emit_line(f"{r.asset_name}: {r.username}: the previous worker's push may still land until "
                          f"{r.deadline_at.strftime('%H:%M:%SZ')}; judging it after that")
            if held.lost.wait(max(0.0, wait) + 0.5):
                return
        if held.lost.is_set():
            return
        tag = f"taken over by worker {self.worker_id}"
        if status == rec.SUCCESS:
            done = rec.settle_success(self.ctx.db, r.id, log=[_line(f"{r.asset_name}: {r.username}: success ({tag})")])
        elif status == rec.FAILED:
            done = rec.settle_failed(self.ctx.db, r.id, error, log=[_line(f"{r.asset_name}: {r.username}: failed ({tag}): {error}")])
        else:
            done = rec.settle_unverified(self.ctx.db, r.id, error,
                                         log=[_line(f"{r.asset_name}: {r.username}: unverified ({tag}): {error}")])
        if done:
            _call(self.on_event, AccountSettled(r.execution_id, asset=r.asset_name, username=r.username, record_id=r.id,
                                                status=status, error=error))


def _job_of(ctx: Context, task_name: str, r: rec.OpenRecord) -> Job | None:
    """The engine's Job for a pending record: its new secret (committed at queueing) and the account's role."""
    if r.account_id is None or r.asset_id is None:
        return None
    try:
        acc = rec.account_info(ctx.db, r.account_id)
    except NotFound:
        return None
    full = rec.record_secrets_full(ctx.db, r.id)
    line = _public_line_of(full.new, full.new_passphrase, task_name) if r.secret_type == "ssh_key" else ""
    return Job(r.id, r.account_id, r.asset_id, r.asset_name, r.username, r.secret_type, acc.privileged,
               full.new, full.new_passphrase, line)


def _call(callback: Callable | None, event) -> None:  # type: ignore[no-untyped-def,type-arg]
    if callback is None:
        return
    try:
        callback(event)
    except Exception:  # noqa: BLE001 - a broken display never stops a rotation
        pass


def _line(text: str) -> str:
    return f"{utcnow().strftime('%Y-%m-%dT%H:%M:%SZ')} {text}"


def _aware(when):  # type: ignore[no-untyped-def]
    from datetime import timezone

    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()[0][:200]
