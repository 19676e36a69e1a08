"""Settle what a run left open: records in pending, pushing or unverified whose process is gone.

A record is never judged before its deadline (DESIGN.md point 5): the host enforces that deadline on the
remote change itself, so until it has passed the push may still land, and a working old secret proves only
"not yet". Such a record stays (or becomes) `unverified` and keeps its account's claim; a later reconcile
probes it. Each open record is probed with real logins: the new secret works -> success (the account takes it); the old
one works -> failed (the host kept it); the vault's current secret works (a later change superseded this one)
-> failed; none confirmed -> unverified, unless the record was never pushed (`pending`: the engine commits
`pushing` before touching a host), which is failed. Executions left `running` by a dead process become
`interrupted`, and stale task locks of dead processes on this machine are released.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from core.context import Context
from core.engine import judge, login, process_start_time, running_here
from core.events import AccountSettled, EventCallback
from core.ssh import Timeouts
from storage import executions as rec
from storage.inventory import NotFound, account_secrets, get_asset_by_id
from storage.locks import lock_holder, release_task_lock
from storage.tables import utcnow


@dataclass
class ReconcileSummary:
    """What a reconcile found and settled."""

    probed: int = 0
    succeeded: int = 0
    failed: int = 0
    unverified: int = 0
    interrupted: list[int] = field(default_factory=list)  # execution ids marked interrupted
    locks_released: int = 0
    skipped_live: int = 0  # open records of runs still alive (left alone)
    waiting: int = 0  # records whose push may still be running on the host (deadline not passed)
    wait_until: datetime | None = None  # the latest such deadline
    records: list[tuple[int, str, str]] = field(default_factory=list)  # (record id, status, error)

    @property
    def nothing_to_do(self) -> bool:
        """Whether there was nothing unsettled."""
        return not (self.probed or self.interrupted or self.locks_released or self.waiting)

    def text(self) -> str:
        """One line for the terminal."""
        if self.nothing_to_do:
            return "reconcile: nothing to settle" + (f" ({self.skipped_live} records belong to runs in progress)"
                                                     if self.skipped_live else "")
        parts = []
        if self.probed or not self.waiting:
            parts.append(f"probed {self.probed} records: {self.succeeded} success, {self.failed} failed, "
                         f"{self.unverified} unverified")
        if self.waiting:
            until = self.wait_until.strftime("%H:%M:%SZ") if self.wait_until else "their deadline"
            parts.append(f"{self.waiting} records left unverified: their push may still be running on the host "
                         f"until {until}; run reconcile again after that")
        if self.interrupted:
            parts.append(f"{len(self.interrupted)} executions marked interrupted")
        if self.locks_released:
            parts.append(f"{self.locks_released} stale task locks released")
        return "reconcile: " + "; ".join(parts)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_is(holder: str | None, host: str, pid: int | None) -> bool:
    return holder is not None and pid is not None and (holder == f"{host}:{pid}" or holder.startswith(f"{host}:{pid}:"))


def _same_process(holder: str, pid: int) -> bool:
    """False when the holder recorded a process start time and the live pid started at another time (reused)."""
    match = re.search(r"-st(\d+)$", holder)
    if match is None or match.group(1) == "0":
        return True
    now = process_start_time(pid)
    return now == 0 or now == int(match.group(1))


def execution_alive(ctx: Context, execution_id: int, task_id: int | None, pid: int | None, host: str) -> bool:
    """Whether the process that runs an execution is still alive (it renews its task lock while it lives)."""
    from storage.workunits import is_worker_run, worker_run_alive

    if is_worker_run(ctx.db, execution_id):
        # Handed to the workers: alive while a unit is left (a dead worker's unit is taken over by another
        # worker once its lease expires, which settles that unit's open records itself) and while the worker
        # that ended the last unit finishes the execution.
        return worker_run_alive(ctx.db, execution_id)
    here = socket.gethostname()
    if host == here and pid == os.getpid():
        return running_here(execution_id)  # this very process: it knows what it runs (TUI, scheduler threads)
    holder = lock_holder(ctx.db, task_id) if task_id is not None else None
    if host == here and pid is not None:
        # A pid can be reused: alive only if it still holds the task's lock and started when the holder did.
        return _pid_exists(pid) and _holder_is(holder, host, pid) and _same_process(holder or "", pid)
    # Another machine: trust its lock until it expires.
    return _holder_is(holder, host, pid)


def _holder_dead(holder: str, pid: int) -> bool:
    """A lock holder on this machine whose process is gone (or whose pid now belongs to another process)."""
    if pid != os.getpid() and not _pid_exists(pid):
        return True
    return not _same_process(holder, pid)


def _release_dead_locks(ctx: Context) -> int:
    here = socket.gethostname()
    released = 0
    for task_id, holder, _expires in rec.task_locks(ctx.db):
        host, _, rest = holder.partition(":")
        pid_text = rest.split(":", 1)[0]
        if host != here or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if _holder_dead(holder, pid):
            release_task_lock(ctx.db, task_id, holder)
            released += 1
    return released


def reconcile(ctx: Context, *, on_event: EventCallback | None = None,
              cancel: threading.Event | None = None) -> ReconcileSummary:
    """Probe and settle every open record whose run is not alive; mark dead runs interrupted."""
    summary = ReconcileSummary()
    alive_cache: dict[int, bool] = {}
    running = rec.running_executions(ctx.db)
    for ex_id, task_id, pid, host in running:
        alive_cache[ex_id] = execution_alive(ctx, ex_id, task_id, pid, host)
    open_records = rec.unsettled_records(ctx.db)
    todo = []
    now = utcnow()
    for r in open_records:
        if r.execution_status == rec.RUNNING:
            alive = alive_cache.get(r.execution_id)
            if alive is None:
                alive = alive_cache[r.execution_id] = True  # started after our first look: leave it alone
            if alive:
                summary.skipped_live += 1
                continue
        if r.waiting(now):
            _wait(ctx, r, summary)
            continue
        todo.append(r)
    by_asset: dict[int | None, list[rec.OpenRecord]] = defaultdict(list)
    for r in todo:
        by_asset[r.asset_id].append(r)
    timeouts = Timeouts.from_settings(ctx.settings)
    lock = threading.Lock()

    def settle(r: rec.OpenRecord, status: str, error: str) -> None:
        if status == rec.SUCCESS:
            done = rec.settle_success(ctx.db, r.id, log=[f"{_stamp()} reconcile: {r.asset_name}: {r.username}: success"])
        elif status == rec.FAILED:
            done = rec.settle_failed(ctx.db, r.id, error, log=[f"{_stamp()} reconcile: {r.asset_name}: {r.username}: failed: {error}"])
        else:
            done = rec.settle_unverified(ctx.db, r.id, error,
                                         log=[f"{_stamp()} reconcile: {r.asset_name}: {r.username}: unverified: {error}"])
        with lock:
            summary.probed += 1
            if done:
                summary.records.append((r.id, status, error))
                summary.succeeded += status == rec.SUCCESS
                summary.failed += status == rec.FAILED
                summary.unverified += status == rec.UNVERIFIED
        if on_event is not None and done:
            try:
                on_event(AccountSettled(r.execution_id, asset=r.asset_name, username=r.username, record_id=r.id,
                                        status=status, error=error))
            except Exception:  # noqa: BLE001 - display problems never stop settling
                pass

    def probe_asset(records: list[rec.OpenRecord]) -> None:
        for r in records:
            if cancel is not None and cancel.is_set():
                return
            try:
                status, error = _probe(ctx, r, timeouts)
            except Exception as exc:  # noqa: BLE001 - leave this record open, go on with the others
                status, error = (rec.UNVERIFIED, f"reconcile could not probe: {type(exc).__name__}")
                if r.status == rec.PENDING:
                    continue
            settle(r, status, error)

    if by_asset:
        workers = max(1, min(ctx.settings.concurrency, len(by_asset)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keyturn-reconcile") as pool:
            for fut in [pool.submit(probe_asset, rs) for rs in by_asset.values()]:
                fut.result()
    touched = {r.execution_id for r in todo}
    for ex_id, _task_id, _pid, _host in running:
        if alive_cache.get(ex_id) is False:
            if rec.interrupt_execution(ctx.db, ex_id, log=[f"{_stamp()} reconcile: the run's process is gone; "
                                                           "execution interrupted"]) is not None:
                summary.interrupted.append(ex_id)
            touched.discard(ex_id)
    for ex_id in touched:
        rec.recount_execution(ctx.db, ex_id)
    summary.locks_released = _release_dead_locks(ctx)
    return summary


def _wait(ctx: Context, r: rec.OpenRecord, summary: ReconcileSummary) -> None:
    """A record whose push may still land: keep both secrets and the claim; a `pushing` one becomes unverified."""
    assert r.deadline_at is not None
    summary.waiting += 1
    summary.wait_until = max(summary.wait_until or r.deadline_at, r.deadline_at)
    if r.status == rec.PUSHING:
        until = r.deadline_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        error = (f"the run stopped during the push; the host may still apply it until {until}, "
                 "so reconcile judges it only after that")
        rec.settle_unverified(ctx.db, r.id, error, log=[f"{_stamp()} reconcile: {r.asset_name}: {r.username}: "
                                                         f"unverified: {error}"])


def probe_record(ctx: Context, r: rec.OpenRecord, timeouts: Timeouts) -> tuple[str, str]:
    """Decide one open record by real logins (new, then old, then the vault's current secret): (status, why)."""
    return _probe(ctx, r, timeouts)


def _probe(ctx: Context, r: rec.OpenRecord, timeouts: Timeouts) -> tuple[str, str]:
    """Decide one open record by logging in with its new, then old, then the vault's current secret."""
    if r.account_id is None or r.asset_id is None:
        return rec.FAILED, "the account or asset was removed from the inventory; not probed"
    try:
        asset = get_asset_by_id(ctx.db, r.asset_id)
        current = account_secrets(ctx.db, r.account_id)
    except NotFound:
        return rec.FAILED, "the account or asset was removed from the inventory; not probed"
    full = rec.record_secrets_full(ctx.db, r.id)
    from core.drivers.gateway import opened

    with opened(ctx.db, asset, timeouts):  # a database behind an SSH gateway: its tunnel for these logins
        status, error = judge(asset, r.username, r.secret_type, timeouts, new=(full.new, full.new_passphrase),
                              old_loader=lambda: (full.old, full.old_passphrase))
        if status == rec.UNVERIFIED and current.secret not in (None, full.old, full.new):
            # A later change may have superseded this one: if the vault's current secret works, nothing is lost.
            if login(asset, r.username, r.secret_type, (current.secret, current.passphrase), timeouts).ok:
                return rec.FAILED, "superseded: the host holds the vault's current secret"
    if status == rec.FAILED:
        error = "host kept the old secret"
    if status == rec.UNVERIFIED and r.status == rec.PENDING:
        # `pushing` is committed before a host is touched, so a pending record was never pushed.
        return rec.FAILED, f"never pushed (the run stopped first); {error}"
    return status, error


def reconcile_if_needed(ctx: Context, *, on_event: EventCallback | None = None) -> ReconcileSummary:
    """reconcile() when anything is open or a dead process holds a lock; a couple of queries otherwise."""
    if rec.anything_unsettled(ctx.db) or _dead_lock_present(ctx):
        return reconcile(ctx, on_event=on_event)
    return ReconcileSummary()


def _dead_lock_present(ctx: Context) -> bool:
    here = socket.gethostname()
    for _task_id, holder, _expires in rec.task_locks(ctx.db):
        host, _, rest = holder.partition(":")
        pid_text = rest.split(":", 1)[0]
        if host == here and pid_text.isdigit() and _holder_dead(holder, int(pid_text)):
            return True
    return False


def _stamp() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
