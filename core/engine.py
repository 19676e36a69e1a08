"""The execution engine: runs a change-secret task over many hosts without ever losing a secret.

Per account, DESIGN.md's state machine, each step committed before the next side effect:
`pending` (old and new secret sealed on the record, for every target, before any host is touched) ->
`pushing` -> the driver pushes -> a login with the new secret -> `success` (the account takes the new
secret in the same transaction) | `failed` (host unchanged, with why) | `unverified` (both secrets kept,
a reconcile settles it later).

Assets run in a thread pool bounded by Settings.concurrency; the accounts of one asset run in sequence on
one privileged connection (the privileged account itself last, since changing it may end that login).

Test hook (inert unless set): KEYTURN_TEST_PAUSE_AFTER="pushing|pushed[:FLAGFILE]" makes the run sleep
(KEYTURN_TEST_PAUSE_SECONDS, default 3600) at that point of the first account it changes, after writing
"POINT RECORD_ID" to FLAGFILE, so crash tests can SIGKILL the process at an exact step. Nothing else reads these variables.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.exc import DatabaseError as _SQLDatabaseError

from core import ssh
from core.context import Context
from core.drivers.base import (
    AMBIGUOUS, NOT_APPLIED, DriverError, HostDriver, PushResult, Verify, change_budget, open_driver, verify_key,
    verify_password,
)
from core.errors import DatabaseWriteError, InputError, KeyturnError
from core.events import (
    AccountPushed, AccountSettled, AssetConnected, AssetConnecting, AssetFailed, Event, EventCallback,
    ExecutionFinished, ExecutionStarted,
)
from core.ssh import Timeouts
from storage import executions as rec
from core.errors import NotFound
from storage.inventory import account_secrets, get_asset_by_id, privileged_account
from storage.locks import acquire_task_lock, holder_id, lock_holder, release_task_lock, renew_task_lock
from storage.types import AssetInfo, ExecutionInfo, TaskSpec

LOCK_RENEW_SECONDS = 60.0
CANCELLED_BEFORE_PUSH = "cancelled before push"
LOG_FLUSH_SECONDS = 2.0
# How much of a change's time budget the `pushing` mark committed during the previous account's login may
# have used up before the deadline is moved (one more commit) to what it would be at the push itself.
MARK_SLACK_SECONDS = 1.0
DB_WRITE_FAILED = ("the database cannot be written ({why}); no new account was started after that. "
                   "Records left open keep both secrets: once the database can be written again, "
                   "`keyturn reconcile` settles them")

# Executions running in this process right now (a reconcile in this process must leave exactly these alone).
_LIVE_EXECUTIONS: set[int] = set()


def running_here(execution_id: int) -> bool:
    """Whether this process is running the execution right now."""
    return execution_id in _LIVE_EXECUTIONS


def process_start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (Linux), 0 when unknown; tells a reused pid apart."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class Job:
    """One account to change: its record and the new secret (already committed on the record)."""

    record_id: int
    account_id: int
    asset_id: int
    asset_name: str
    username: str
    secret_type: str
    privileged: bool
    new_secret: str | None = field(repr=False)
    new_passphrase: str | None = field(default=None, repr=False)
    public_line: str = ""


@dataclass
class _NewSecret:
    secret: str | None = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)
    public_line: str = ""


def task_snapshot(spec: TaskSpec, settings_view: dict | None = None) -> dict:
    """The task frozen for an execution, without any secret (only whether each one is set)."""
    data: dict = {}
    for f in dataclasses.fields(spec):
        if f.name in ("specific_secret", "specific_passphrase", "become_password"):
            data["has_" + f.name] = getattr(spec, f.name) is not None
            continue
        value = getattr(spec, f.name)
        if f.name in ("rules", "params"):
            value = value.to_dict()
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, list):
            value = list(value)
        data[f.name] = value
    if settings_view:
        data["settings"] = settings_view
    return data


class _Run:
    """State of one execution while it runs: the log buffer, events, cancellation and the lock."""

    def __init__(self, ctx: Context, spec: TaskSpec, execution_id: int, *, cancel: threading.Event | None,
                 on_event: EventCallback | None) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.spec = spec
        self.execution_id = execution_id
        self.cancel = cancel or threading.Event()
        self.on_event = on_event
        self.timeouts = Timeouts.from_settings(ctx.settings)
        self._log: list[str] = []
        self._flushed = time.monotonic()
        self._log_lock = threading.Lock()
        self._pause = _TestPause.from_env()
        self.db_error: str = ""  # set once a database write failed: the run stops starting accounts
        self.budget = change_budget(self.timeouts)
        self.writer = _StepWriter(self)
        self._local = threading.local()  # .settles: the settles of the asset this thread works, not yet waited

    def db_failed(self, exc: BaseException) -> None:
        """A write failed (full disk, read-only file): start no new account; records stay open for reconcile."""
        if not self.db_error:
            self.db_error = _db_reason(exc)
        self.cancel.set()

    # -- events and log ----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Send an event to the callback and queue its line for the execution log."""
        line = f"{event.at.strftime('%Y-%m-%dT%H:%M:%SZ')} {event.text()}"
        with self._log_lock:
            self._log.append(line)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken display (closed pipe, dead widget) must not stop a rotation
                pass

    def drain(self, *, force: bool = False) -> list[str]:
        """Log lines to write with the next transaction: every LOG_FLUSH_SECONDS, or all now when forced.

        Appending to the log rewrites the execution row, so writing it on every state change would cost more
        than the change itself; the records carry the state, the log only tells the story.
        """
        now = time.monotonic()
        with self._log_lock:
            if not force and now - self._flushed < LOG_FLUSH_SECONDS:
                return []
            lines, self._log, self._flushed = self._log, [], now
        return lines

    def settled(self, job: Job, status: str, error: str = "") -> None:
        """Emit AccountSettled for a job."""
        self.emit(AccountSettled(self.execution_id, asset=job.asset_name, username=job.username,
                                 record_id=job.record_id, status=status, error=error))

    # -- per asset ---------------------------------------------------------------------------------
    def work_asset(self, jobs: list[Job]) -> None:
        """Change every account of one asset over one privileged connection; never raises.

        Each account's settle is committed by the run's step writer while this thread goes on; all of them
        are committed (or have failed) when this returns.
        """
        settles: list[tuple[Job, Future]] = []
        self._local.settles = settles
        try:
            self._work_asset(jobs)
        finally:
            self._local.settles = None
        try:
            self._check_settles(settles, wait=True)
        except _SQLDatabaseError as exc:
            self.db_failed(exc)
            self.emit(AssetFailed(self.execution_id, asset=jobs[0].asset_name,
                                  error=f"stopped: the database cannot be written ({self.db_error})"))
        except Exception as exc:  # noqa: BLE001 - the record stays `pushing`: reconcile settles it
            self.emit(AssetFailed(self.execution_id, asset=jobs[0].asset_name, error=f"internal error: {type(exc).__name__}"))

    def _check_settles(self, settles: list[tuple[Job, Future]], *, wait: bool = False) -> None:
        """Forget the settles that are done (all of them, waiting, with wait); raise the first one's failure."""
        failure: BaseException | None = None
        for item in [x for x in settles if wait or x[1].done()]:
            settles.remove(item)
            exc = item[1].exception()
            if exc is not None and failure is None:
                failure = exc
        if failure is not None:
            raise failure

    def _work_asset(self, jobs: list[Job]) -> None:
        jobs = sorted(jobs, key=lambda j: (j.privileged, j.username))
        remaining = list(jobs)
        # Deadline of remaining[0] when it is already `pushing`; `pending_mark` is that step while it commits.
        marked: float | None = None
        pending_mark: _Mark | None = None
        try:
            if self.db_error:
                return  # nothing more can be written: the records stay pending, reconcile settles them
            if self.cancel.is_set():
                self._fail_unpushed(remaining, CANCELLED_BEFORE_PUSH)
                return
            asset = get_asset_by_id(self.db, jobs[0].asset_id)
            if self.spec.params.self_change:
                from core.drivers.selfchange import change_own_accounts

                change_own_accounts(self, asset, remaining)  # accounts that log in as themselves leave `remaining`
                if not remaining:
                    return
            driver, error = self._connect(asset)
            if driver is None:
                self._fail_unpushed(remaining, error)
                return
            try:
                while remaining:
                    if pending_mark is not None:
                        marked, pending_mark = pending_mark.wait(), None  # committed before this host is touched
                    self._check_settles(self._local.settles)
                    if self.db_error:
                        return  # no new account once the database cannot be written (records stay open)
                    if self.cancel.is_set() and marked is None:
                        self._fail_unpushed(remaining, CANCELLED_BEFORE_PUSH)
                        return
                    if not _alive(driver):
                        driver.close()
                        driver, error = self._connect(asset)
                        if driver is None:
                            self._fail_unpushed(remaining, error)
                            return
                    job = remaining.pop(0)
                    nxt = remaining[0].record_id if remaining and not self.cancel.is_set() else None
                    pending_mark, marked = self.change_one(driver, asset, job, pushing_deadline=marked, then_pushing=nxt), None
            finally:
                if driver is not None:
                    driver.close()
        except _SQLDatabaseError as exc:
            # The records stay as committed (pending or pushing, both secrets sealed): reconcile settles them.
            self.db_failed(exc)
            self.emit(AssetFailed(self.execution_id, asset=jobs[0].asset_name,
                                  error=f"stopped: the database cannot be written ({self.db_error})"))
        except Exception as exc:  # noqa: BLE001 - one bad host (or a bug on it) never stops the others
            self.emit(AssetFailed(self.execution_id, asset=jobs[0].asset_name, error=f"internal error: {type(exc).__name__}"))
            # Only never-pushed records are settled here; one caught mid-push stays `pushing` for reconcile.
            try:
                self._fail_unpushed(remaining, f"internal error: {type(exc).__name__}")
            except _SQLDatabaseError as db_exc:
                self.db_failed(db_exc)

    def _connect(self, asset: AssetInfo) -> tuple[HostDriver | None, str]:
        """(driver, "") or (None, why): the error travels with its asset, never through shared state."""
        self.emit(AssetConnecting(self.execution_id, asset=asset.name, address=f"{asset.address}:{asset.port}"))
        priv = privileged_account(self.db, asset.id)
        if priv is None:
            return self._connect_failed(asset, "no privileged account on the asset")
        creds = account_secrets(self.db, priv.id)
        become = self.spec.become_password or creds.become
        from core.drivers import gateway

        tunneled = False
        try:
            tunneled = gateway.acquire(self.db, asset, self.timeouts)  # a database behind an SSH gateway
            driver = open_driver(
                asset, priv.username,
                password=creds.secret if priv.secret_type == "password" else None,
                pkey_text=creds.secret if priv.secret_type == "ssh_key" else None,
                passphrase=creds.passphrase, become=become, params=self.spec.params, timeouts=self.timeouts,
            )
        except (ssh.SSHError, DriverError) as exc:
            if tunneled:
                gateway.release(asset)
            return self._connect_failed(asset, ssh.scrub(str(exc), [creds.secret, creds.passphrase, become]))
        self.emit(AssetConnected(self.execution_id, asset=asset.name))
        return driver, ""

    def _connect_failed(self, asset: AssetInfo, error: str) -> tuple[None, str]:
        self.emit(AssetFailed(self.execution_id, asset=asset.name, error=error))
        return None, error

    def _fail_unpushed(self, jobs: Sequence[Job], error: str) -> None:
        """Settle never-pushed records as failed (the host was not touched for them)."""
        if not jobs:
            return
        # The first may already be `pushing` (marked with the previous settle) yet never pushed.
        rec.settle(self.db, jobs[0].record_id, rec.FAILED, error, log=self.drain())
        rec.settle_many_failed(self.db, [j.record_id for j in jobs[1:]], error, log=self.drain())
        for job in jobs:
            self.settled(job, rec.FAILED, error)

    # -- per account -------------------------------------------------------------------------------
    def change_one(self, driver: HostDriver, asset: AssetInfo, job: Job, *, pushing_deadline: float | None = None,
                   then_pushing: int | None = None) -> "_Mark | None":
        """Push one secret and settle its record.

        pushing_deadline: the record is already `pushing` with this deadline (epoch seconds).
        then_pushing: the record this host changes next. Once this push has ended, it is sent to be marked
        `pushing` (committed by the step writer while this account's login runs); the returned _Mark's wait()
        gives its deadline, or None when it was not marked. No host is touched for it before that commit.
        The settle is sent to the step writer too: inside work_asset it is waited for there, else here.
        """
        deadline = pushing_deadline
        if deadline is None:
            deadline = time.time() + self.budget
            if not rec.mark_pushing(self.db, job.record_id, log=self.drain(), deadline=_utc(deadline)):
                return None  # settled elsewhere (a reconcile of a run thought dead): never push twice
        self._pause.at("pushing", job.record_id)
        try:
            if job.secret_type == "ssh_key":
                result = driver.install_key(job.username, job.public_line, self.spec.ssh_key_strategy, deadline=deadline)
            else:
                result = driver.change_password(job.username, job.new_secret or "", deadline=deadline)
        except DriverError as exc:
            result = PushResult(NOT_APPLIED, str(exc))
        self._pause.at("pushed", job.record_id)
        mark = None
        if then_pushing is not None:
            mark_deadline = time.time() + self.budget
            mark = _Mark(self, then_pushing, mark_deadline)
        if result.state == NOT_APPLIED:
            status, error = rec.FAILED, result.error
        else:
            if result.applied:
                self.emit(AccountPushed(self.execution_id, asset=job.asset_name, username=job.username,
                                        record_id=job.record_id))
            must_verify = result.state == AMBIGUOUS or (self.spec.check_after_change and self.spec.params.verify != "none")
            if must_verify:
                if self.spec.params.settle_delay:
                    time.sleep(self.spec.params.settle_delay)  # a slow device (commit) applies the change late
                status, error = judge(asset, job.username, job.secret_type, self.timeouts,
                                      new=(job.new_secret, job.new_passphrase),
                                      old_loader=lambda: _old_secret(self.db, job.record_id), push_error=result.error,
                                      push_in_flight=result.in_flight)
            else:
                status, error = rec.SUCCESS, ""
        fut = self.writer.submit(rec.SettleStep(job.record_id, status, error, push_ended=not result.in_flight),
                                 then=lambda outcome: self._settle_done(job, outcome))
        settles = getattr(self._local, "settles", None)
        if settles is None:
            fut.result()  # outside work_asset: nobody would wait for it later
        else:
            settles.append((job, fut))
        return mark

    def _settle_done(self, job: Job, outcome: "rec.StepResult") -> None:
        """In the step writer's thread, once a settle is committed (or failed): its event, or the run stops."""
        if isinstance(outcome, tuple):
            _settled, status, error = outcome
            self.settled(job, status, error)
        elif isinstance(outcome, _SQLDatabaseError):
            self.db_failed(outcome)  # no new account starts; the record stays open for reconcile


class _Mark:
    """The `pushing` step of a host's next account, sent to the run's step writer when the previous push ended."""

    def __init__(self, run: "_Run", record_id: int, deadline: float) -> None:
        self.run, self.record_id, self.deadline = run, record_id, deadline
        self.fut = run.writer.submit(rec.PushingStep(record_id, _utc(deadline)))

    def wait(self) -> float | None:
        """Once committed: the record's deadline, or None when it was not pending any more (never push it).

        The deadline was set before the previous account's login; if that took more than MARK_SLACK_SECONDS,
        a later one is committed first, so the host's time limit for this change stays what it would have been.
        """
        if not self.fut.result():
            return None
        fresh = time.time() + self.run.budget
        if fresh - self.deadline <= MARK_SLACK_SECONDS:
            return self.deadline
        if not self.run.writer.submit(rec.PushingStep(self.record_id, _utc(fresh), renew=True)).result():
            return None  # settled meanwhile by someone else: never push it
        return fresh


class _StepWriter:
    """Commits a run's record steps (settles, `pushing` marks) from one thread, as many per transaction as
    are waiting (group commit): the asset threads do not stop for a settle's commit, and the `pushing` mark
    of a host's next account commits while the current account's login runs.

    What this changes nothing about: a record is `pushing` (committed) before its host is touched, because
    the asset thread waits for that step; a settle is written after the push's outcome is known. A settle
    still queued when the process dies leaves its record `pushing` with its deadline, which reconcile
    probes and settles like any other push whose end it did not see. The thread ends when idle.
    """

    IDLE_SECONDS = 0.5
    LINGER_SECONDS = 0.02

    def __init__(self, run: "_Run") -> None:
        self._run = run
        self._cv = threading.Condition()
        self._queue: list[tuple[rec.Step, Future, Callable[[rec.StepResult], None] | None]] = []
        self._running = False

    def submit(self, step: rec.Step, then: Callable[[rec.StepResult], None] | None = None) -> Future:
        """Queue a step; the future gives write_steps' result for it (or raises its exception).

        then(result or exception) runs in the writer's thread before the future is resolved (so whoever waits
        for the future finds its effects, such as an event, already done).
        """
        fut: Future = Future()
        with self._cv:
            self._queue.append((step, fut, then))
            if self._running:
                self._cv.notify()
                return fut
            self._running = True
        threading.Thread(target=self._loop, daemon=True, name=f"keyturn-steps-{self._run.execution_id}").start()
        return fut

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._queue:
                    self._cv.wait(self.IDLE_SECONDS)
                if not self._queue:
                    self._running = False
                    return
                # Only settles waiting: no thread waits for them, and a host's next `pushing` mark follows its
                # push within milliseconds: wait a little for it, to commit both in one transaction.
                end = time.monotonic() + self.LINGER_SECONDS
                while not any(isinstance(item[0], rec.PushingStep) for item in self._queue):
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch, self._queue = self._queue, []
            results: list[rec.StepResult]
            try:
                results = rec.write_steps(self._run.db, self._run.execution_id, [item[0] for item in batch],
                                          log=self._run.drain())
            except BaseException as exc:  # noqa: BLE001 - each waiting thread gets the error of its step
                results = [exc] * len(batch)
            for (_step, fut, then), result in zip(batch, results):
                if then is not None:
                    try:
                        then(result)
                    except Exception:  # noqa: BLE001 - a broken follow-up must not keep the step's owner waiting
                        pass
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _db_reason(exc: BaseException) -> str:
    """A database error in plain words, without SQL or parameters."""
    text = str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()[0]
    return text[:200]


def _old_secret(db, record_id: int) -> tuple[str | None, str | None]:  # type: ignore[no-untyped-def]
    full = rec.record_secrets_full(db, record_id)
    return full.old, full.old_passphrase


def login(asset: AssetInfo, username: str, secret_type: str, secret: tuple[str | None, str | None],
          timeouts: Timeouts) -> Verify:
    """Log in as the account with one secret (password, or private key and passphrase)."""
    if secret_type == "ssh_key":
        return verify_key(asset, username, secret[0], secret[1], timeouts)
    return verify_password(asset, username, secret[0], timeouts)


def judge(asset: AssetInfo, username: str, secret_type: str, timeouts: Timeouts, *,
          new: tuple[str | None, str | None], old_loader: Callable[[], tuple[str | None, str | None]],
          push_error: str = "", push_in_flight: bool = False) -> tuple[str, str]:
    """Probe new then old: (success|failed|unverified, why). Only a real login decides.

    push_in_flight: the push's end was never seen, so it may still apply after this probe; then even a
    working old secret only proves "not yet", and the record stays unverified for a later reconcile.
    """
    tail = f" (push: {push_error})" if push_error else ""
    v_new = login(asset, username, secret_type, new, timeouts)
    if v_new.ok:
        return rec.SUCCESS, ""
    if not v_new.rejected:
        return rec.UNVERIFIED, f"could not verify the new secret: {v_new.reason}{tail}"
    v_old = login(asset, username, secret_type, old_loader(), timeouts)
    if v_old.ok and push_in_flight:
        return rec.UNVERIFIED, f"the host still had the old secret, but the lost push may still apply; reconcile will settle it{tail}"
    if v_old.ok:
        return rec.FAILED, f"the new secret was rejected at login; the host kept the old one{tail}"
    why = "rejected too" if v_old.rejected else f"could not be checked: {v_old.reason}"
    return rec.UNVERIFIED, f"the new secret was rejected at login and the old one {why}{tail}"


def _alive(driver: HostDriver) -> bool:
    alive = getattr(driver, "alive", None)
    if callable(alive):  # database drivers know their own connection
        return bool(alive())
    client = getattr(driver, "client", None)
    transport = client.get_transport() if client is not None else None
    return transport is not None and transport.is_active()


class _TestPause:
    """The crash-test hook described in the module docstring; a no-op unless its variable is set."""

    def __init__(self, point: str | None, flag: str | None, seconds: float) -> None:
        self.point, self.flag, self.seconds = point, flag, seconds
        self._done = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "_TestPause":
        raw = os.environ.get("KEYTURN_TEST_PAUSE_AFTER", "")
        point, _, flag = raw.partition(":")
        return cls(point or None, flag or None, float(os.environ.get("KEYTURN_TEST_PAUSE_SECONDS", "3600")))

    def at(self, point: str, record_id: int) -> None:
        if self.point != point:
            return
        with self._lock:
            if self._done:
                return
            self._done = True
        if self.flag:
            Path(self.flag).write_text(f"{point} {record_id}")
        time.sleep(self.seconds)


# -- secrets for new records -------------------------------------------------------------------------
def _new_secret(spec: TaskSpec) -> _NewSecret:
    from core.secretgen import check_specific_password, generate_password, generate_ssh_key, load_private_key

    if spec.secret_type == "ssh_key":
        if spec.secret_strategy == "specific":
            if not spec.specific_secret:
                raise InputError(f"task {spec.name}: the specific private key is not set")
            key = load_private_key(spec.specific_secret, spec.specific_passphrase, spec.name)
            return _NewSecret(key.private_openssh, spec.specific_passphrase, key.public_line)
        key = generate_ssh_key(spec.key_algorithm, spec.name)
        return _NewSecret(key.private_openssh, None, key.public_line)
    if spec.secret_strategy == "specific":
        if not spec.specific_secret:
            raise InputError(f"task {spec.name}: the specific password is not set")
        check_specific_password(spec.specific_secret)
        return _NewSecret(spec.specific_secret)
    return _NewSecret(generate_password(spec.rules))


def _public_line_of(private_text: str | None, passphrase: str | None, label: str) -> str:
    from core.secretgen import load_private_key

    return load_private_key(private_text or "", passphrase, label).public_line


# -- entry points ------------------------------------------------------------------------------------
@dataclass
class _Planned:
    """A target to create a record for."""

    account_id: int
    asset_id: int
    asset_name: str
    username: str
    secret_type: str
    privileged: bool
    secret: _NewSecret
    retry_of: int | None = None
    attempt: int = 1


def _load_task(ctx: Context, task_name: str) -> TaskSpec:
    from storage.tasks import get_task

    return get_task(ctx.db, task_name)


def run_task(ctx: Context, task_name: str, *, trigger: str = "manual", cancel: threading.Event | None = None,
             on_event: EventCallback | None = None, only_record_ids: list[int] | None = None) -> ExecutionInfo:
    """Run a task now over all its targets (or, with only_record_ids, retry those records of it).

    The acting person must be allowed to run (keyturn's own scheduler context is: Context.system)."""
    from core.operators import require

    require(ctx, "run")
    if only_record_ids is not None:
        return retry_records(ctx, only_record_ids, cancel=cancel, on_event=on_event, task_name=task_name)
    from core.targets import preview

    spec = _load_task(ctx, task_name)
    targets = preview(ctx, spec).targets
    planned = [_Planned(t.account_id, t.asset_id, t.asset_name, t.username, t.secret_type, t.privileged, _new_secret(spec))
               for t in targets]
    return _execute(ctx, spec, trigger, planned, cancel=cancel, on_event=on_event)


def _newest_per_account(ctx: Context, records: list) -> list:
    """One record per account, its newest; none for an account a later change already set (issue 12 #4).

    Several failed records of one account (one per run) retried together made one execution change the
    account three times, and an old unverified candidate re-pushed over a newer success.
    """
    newest: dict[int, Any] = {}
    for r in records:
        if r.account_id not in newest or r.id > newest[r.account_id].id:
            newest[r.account_id] = r
    kept = []
    for r in newest.values():
        later = rec.later_success(ctx.db, r.id, r.account_id)
        if later is None:
            kept.append(r)
        elif len(newest) == 1:
            raise InputError(f"record {r.id}: {r.asset_name}/{r.username} was changed since by record {later}; "
                             "nothing to retry")
    return sorted(kept, key=lambda r: r.id)


def retry_records(ctx: Context, record_ids: list[int], *, cancel: threading.Event | None = None,
                  on_event: EventCallback | None = None, task_name: str | None = None) -> ExecutionInfo:
    """Retry failed or unverified records of one task: an unverified one re-pushes its same candidate secret,
    a failed one gets a fresh secret (random, or the task's specific one)."""
    spec, planned = plan_retry(ctx, record_ids, task_name=task_name)
    return _execute(ctx, spec, "retry", planned, cancel=cancel, on_event=on_event)


def plan_retry(ctx: Context, record_ids: list[int], *, task_name: str | None = None) -> tuple[TaskSpec, list[_Planned]]:
    """The task and the accounts (with their secrets) a retry of record_ids changes, checked (InputError naming
    the record); nothing is written. In-process retries and retries queued for workers share it."""
    from core.operators import require
    from storage.tasks import get_task_by_id

    require(ctx, "run")  # in-process and queued retries alike
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise InputError("retry: give at least one record id")
    records = []
    for rid in ids:
        try:
            r = rec.get_record(ctx.db, rid)
        except NotFound:
            raise InputError(f"record {rid}: no such change record") from None
        if r.status not in (rec.FAILED, rec.UNVERIFIED):
            raise InputError(f"record {rid}: is {r.status}; only failed or unverified records can be retried")
        child = rec.retried_as(ctx.db, rid)
        if child is not None:
            raise InputError(f"record {rid}: was already retried as record {child}; retry that one")
        if r.account_id is None:
            raise InputError(f"record {rid}: its account was removed from the inventory")
        if task_name is not None and r.task_name != task_name:
            raise InputError(f"record {rid}: belongs to task {r.task_name!r}, not {task_name!r}")
        records.append(r)
    records = _newest_per_account(ctx, records)
    task_ids = {r.task_id for r in records}
    if len(task_ids) != 1:
        names = ", ".join(sorted({r.task_name for r in records}))
        raise InputError(f"retry: the records belong to different tasks ({names}); retry each task's records separately")
    task_id = task_ids.pop()
    if task_id is None:
        raise KeyturnError(f"record {records[0].id}: its task {records[0].task_name!r} was deleted; it cannot be retried")
    spec = get_task_by_id(ctx.db, task_id)
    planned = []
    for r in records:
        acc = rec.account_info(ctx.db, r.account_id)
        if r.status == rec.UNVERIFIED:
            full = rec.record_secrets_full(ctx.db, r.id)
            line = _public_line_of(full.new, full.new_passphrase, spec.name) if r.secret_type == "ssh_key" else ""
            secret = _NewSecret(full.new, full.new_passphrase, line)
        else:
            secret = _new_secret(spec)
        planned.append(_Planned(acc.id, acc.asset_id, acc.asset_name, acc.username, acc.secret_type, acc.privileged,
                                secret, retry_of=r.id, attempt=r.attempt + 1))
    return spec, planned


def failed_record_ids(ctx: Context, task_name: str) -> list[int]:
    """The latest failed or unverified record of each of the task's accounts not retried yet (InputError if none)."""
    latest = rec.latest_records_of_task(ctx.db, task_name)
    ids = [r.id for r in latest if r.status in (rec.FAILED, rec.UNVERIFIED) and rec.retried_as(ctx.db, r.id) is None]
    if not ids:
        raise InputError(f"task {task_name}: no failed or unverified record to retry")
    return ids


def retry_failed(ctx: Context, task_name: str, *, cancel: threading.Event | None = None,
                 on_event: EventCallback | None = None) -> ExecutionInfo:
    """Retry every account whose latest record in the task failed (or stayed unverified)."""
    return retry_records(ctx, failed_record_ids(ctx, task_name), cancel=cancel, on_event=on_event, task_name=task_name)


def _check_and_lock(ctx: Context, spec: TaskSpec, planned: list[_Planned], kind: str) -> str:
    """Check a run's targets again (a stored task may predate today's rules) and take the task's lock; returns
    the lock holder. kind names the holder ("run" in-process, "queue" for workers)."""
    assert spec.id is not None
    from core.runguard import check_run
    from core.stepup import require_step_up

    check_run(ctx, spec, ((p.asset_id, p.asset_name) for p in planned))
    # A run pushes new secrets to the task's targets: a fresh code from the person (the scheduler needs none).
    require_step_up(ctx, ctx.mfa, "task.run", "run")
    holder = holder_id(f"{kind}-{os.urandom(4).hex()}-st{process_start_time(os.getpid())}")
    if not acquire_task_lock(ctx.db, spec.id, holder):
        raise KeyturnError(f"task {spec.name} is already running ({lock_holder(ctx.db, spec.id) or 'another run'})")
    return holder


def _execute(ctx: Context, spec: TaskSpec, trigger: str, planned: list[_Planned], *,
             cancel: threading.Event | None, on_event: EventCallback | None) -> ExecutionInfo:
    assert spec.id is not None
    holder = _check_and_lock(ctx, spec, planned, "run")
    db = ctx.db
    started = time.monotonic()
    stop_renew = threading.Event()
    renewer = threading.Thread(target=_renew_lock, args=(db, spec.id, holder, stop_renew), daemon=True,
                               name=f"keyturn-lock-{spec.id}")
    renewer.start()
    execution_id: int | None = None
    run: _Run | None = None
    try:
        snapshot = task_snapshot(spec, {"secure_mode": ctx.settings.secure_mode, "concurrency": ctx.settings.concurrency})
        execution_id = rec.create_execution(db, task_id=spec.id, task_name=spec.name, trigger=trigger,
                                            operator=ctx.operator or "", snapshot=snapshot, pid=os.getpid(),
                                            hostname=socket.gethostname())
        _audit(ctx, "execution.start", execution_id, {"task": spec.name, "trigger": trigger, "accounts": len(planned)})
        run = _Run(ctx, spec, execution_id, cancel=cancel, on_event=on_event)
        assets = {p.asset_id for p in planned}
        run.emit(ExecutionStarted(execution_id, task_name=spec.name, trigger=trigger, total=len(planned), assets=len(assets)))
        # Write-ahead: every new secret is committed on its record before the first host is touched, and each
        # account is claimed in that same commit (an account another run is changing is skipped, not pushed).
        ids, skipped = rec.add_claimed_records(db, execution_id, [
            rec.PendingItem(p.account_id, p.secret.secret, p.secret.passphrase, p.retry_of, p.attempt) for p in planned
        ], log=run.drain(force=True))
        by_asset: dict[int, list[Job]] = defaultdict(list)
        for rid, p in zip(ids, planned):
            job = Job(rid, p.account_id, p.asset_id, p.asset_name, p.username, p.secret_type, p.privileged,
                      p.secret.secret, p.secret.passphrase, p.secret.public_line)
            if rid in skipped:
                run.settled(job, rec.FAILED, skipped[rid])
            else:
                by_asset[p.asset_id].append(job)
        workers = max(1, min(ctx.settings.concurrency, len(by_asset)))
        _LIVE_EXECUTIONS.add(execution_id)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"keyturn-exec-{execution_id}")
        try:
            for fut in [pool.submit(run.work_asset, jobs) for jobs in by_asset.values()]:
                fut.result()
        except BaseException:
            # Ctrl-C or a crash in this thread: workers start no new account; the ones in flight finish.
            run.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True)
        if run.db_error:
            raise DatabaseWriteError(DB_WRITE_FAILED.format(why=run.db_error))
        from core.dependencies import run_for_execution  # dependent updates follow successful changes; never raises
        run_for_execution(ctx, spec.id, execution_id, run.emit)
        info = rec.finish_execution(db, execution_id, cancelled=run.cancel.is_set(), log=run.drain(force=True))
        run.emit(ExecutionFinished(execution_id, status=info.status, total=info.total, succeeded=info.succeeded,
                                   failed=info.failed, unverified=info.unverified, duration_s=time.monotonic() - started))
        rec.append_log(db, execution_id, run.drain(force=True))
        _audit(ctx, "execution.finish", execution_id, {"task": spec.name, "status": info.status, "total": info.total,
                                                        "succeeded": info.succeeded, "failed": info.failed,
                                                        "unverified": info.unverified})
        return rec.get_execution(db, execution_id, with_log=False)
    except BaseException as exc:
        if execution_id is not None:
            # Records still `pushing` stay open for reconcile; the execution no longer claims to run.
            try:
                rec.finish_execution(db, execution_id, status="interrupted", log=run.drain(force=True) if run else ())
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        if isinstance(exc, _SQLDatabaseError):
            raise DatabaseWriteError(DB_WRITE_FAILED.format(why=_db_reason(exc))) from None
        raise
    finally:
        if execution_id is not None:
            _LIVE_EXECUTIONS.discard(execution_id)
        stop_renew.set()
        renewer.join(timeout=5)
        try:
            release_task_lock(db, spec.id, holder)
        except _SQLDatabaseError:
            pass  # an unwritable database: the lock expires, and reconcile releases a dead process's lock


def _renew_lock(db, task_id: int, holder: str, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    while not stop.wait(LOCK_RENEW_SECONDS):
        try:
            renew_task_lock(db, task_id, holder)
        except Exception:  # noqa: BLE001 - a busy database now is retried at the next tick
            pass


def _audit(ctx: Context, action: str, execution_id: int, detail: dict) -> None:
    from core.audit import record_event

    try:
        record_event(ctx, action, "execution", execution_id, detail)
    except Exception:  # noqa: BLE001 - the audit trail must not break a rotation in flight
        pass
