"""The change state machine on a real SQLite database: write-ahead records, settling once, counts, reconcile.

Hosts here are unreachable addresses (a closed port on loopback), so every SSH attempt really fails fast;
the runs that reach real hosts are in tests/integration/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from core.context import Context
from core.engine import process_start_time, run_task
from core.errors import KeyturnError
from core.events import AssetFailed, Event
from core.reconcile import reconcile, reconcile_if_needed
from core.tasks import create_task
from storage import executions as rec
from storage.inventory import account_secrets, pin_host_key, secret_history, upsert_account, upsert_asset
from storage.locks import acquire_task_lock, lock_holder
from storage.tables import Execution
from storage.types import TaskSpec

# Storage, engine, scheduler, MFA rules: the same on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_backends

HOST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIKOLNcoNAz6N5gfTi6ny0xGG7YLCJxlchAwsGO1SDJ+B"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inventory(ctx: Context, users: tuple[str, ...] = ("alice", "bob")) -> dict[str, int]:
    """One asset on a closed loopback port, an admin and the given users; returns account ids by name."""
    ids = {}
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "down", address="127.0.0.1", port=_closed_port())
        pin_host_key(s, asset, "ssh-ed25519", HOST_KEY, "test")
        ids["admin"] = upsert_account(ctx.db, s, asset, "admin", secret="admin-pw", privileged=True)[0].id
        for u in users:
            ids[u] = upsert_account(ctx.db, s, asset, u, secret=f"old-{u}")[0].id
    return ids


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _execution(ctx: Context, *, pid: int, task_id: int | None = None) -> int:
    return rec.create_execution(ctx.db, task_id=task_id, task_name="t", trigger="cli", operator="tester",
                                snapshot={}, pid=pid, hostname=socket.gethostname())


# -- storage state machine -------------------------------------------------------------------------
def test_pending_records_hold_the_old_and_new_secret_before_anything_else(ctx: Context) -> None:
    ids = _inventory(ctx)
    ex = _execution(ctx, pid=os.getpid())
    [r1, r2] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "new-a"), rec.PendingItem(ids["bob"], "new-b")])
    assert rec.record_secrets(ctx.db, r1) == ("old-alice", "new-a")
    assert rec.record_secrets(ctx.db, r2) == ("old-bob", "new-b")
    assert [r.status for r in rec.list_records(ctx.db, execution_id=ex)] == ["pending", "pending"]
    assert rec.get_execution(ctx.db, ex).total == 2


def test_success_moves_the_account_to_the_new_secret_once_with_history(ctx: Context) -> None:
    ids = _inventory(ctx)
    ex = _execution(ctx, pid=os.getpid())
    [r1, r2] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "new-a"), rec.PendingItem(ids["bob"], "new-b")])
    assert rec.mark_pushing(ctx.db, r1) is True
    assert rec.mark_pushing(ctx.db, r1) is False  # only from pending
    assert rec.settle(ctx.db, r1, rec.SUCCESS, then_pushing=r2) == (True, True)
    assert rec.get_record(ctx.db, r2).status == "pushing"  # committed with alice's settle
    assert rec.settle_failed(ctx.db, r1, "late") is False  # a settled record never moves again
    secrets = account_secrets(ctx.db, ids["alice"])
    assert secrets.secret == "new-a"
    assert [s for _v, _t, s in secret_history(ctx.db, ids["alice"])] == ["old-alice"]
    assert rec.get_record(ctx.db, r1).status == "success"


def test_failed_and_unverified_keep_the_account_secret_and_count_right(ctx: Context) -> None:
    ids = _inventory(ctx, ("alice", "bob", "carol", "dave"))
    ex = _execution(ctx, pid=os.getpid())
    rids = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids[u], f"new-{u}") for u in ("alice", "bob", "carol", "dave")])
    rec.settle_success(ctx.db, rids[0])
    rec.settle_failed(ctx.db, rids[1], "the new secret was rejected")
    rec.settle_unverified(ctx.db, rids[2], "host went away")
    assert account_secrets(ctx.db, ids["bob"]).secret == "old-bob"
    assert account_secrets(ctx.db, ids["carol"]).secret == "old-carol"
    info = rec.finish_execution(ctx.db, ex)  # dave never left pending: counted as not confirmed
    assert (info.status, info.total, info.succeeded, info.failed, info.unverified) == ("partial", 4, 1, 1, 2)
    assert rec.settle_many_failed(ctx.db, rids, "cancelled before push") == 1  # only dave was still pending
    assert [r.id for r in rec.unsettled_records(ctx.db)] == [rids[2]]


def test_a_retried_record_is_no_longer_open(ctx: Context) -> None:
    ids = _inventory(ctx)
    ex = _execution(ctx, pid=os.getpid())
    [r1] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "cand")])
    rec.settle_unverified(ctx.db, r1, "timeout")
    rec.finish_execution(ctx.db, ex)
    assert rec.anything_unsettled(ctx.db)
    ex2 = _execution(ctx, pid=os.getpid())
    [r2] = rec.add_pending_records(ctx.db, ex2, [rec.PendingItem(ids["alice"], "cand", retry_of=r1, attempt=2)])
    assert rec.retried_as(ctx.db, r1) == r2
    assert [r.id for r in rec.unsettled_records(ctx.db)] == [r2]


# -- reconcile -------------------------------------------------------------------------------------
def test_reconcile_settles_a_dead_run_never_pushed_failed_pushed_unverified(ctx: Context) -> None:
    ids = _inventory(ctx)
    spec = create_task(ctx, TaskSpec(name="t", usernames=["alice", "bob"], assets=["down"]))
    dead = _dead_pid()
    ex = _execution(ctx, pid=dead, task_id=spec.id)
    holder = f"{socket.gethostname()}:{dead}:run-x"
    assert acquire_task_lock(ctx.db, spec.id, holder)
    [r_pending, r_pushing] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "n1"), rec.PendingItem(ids["bob"], "n2")])
    rec.mark_pushing(ctx.db, r_pushing)
    assert rec.anything_unsettled(ctx.db)

    summary = reconcile(ctx)
    assert summary.interrupted == [ex] and summary.locks_released == 1 and summary.probed == 2
    pending, pushing = rec.get_record(ctx.db, r_pending), rec.get_record(ctx.db, r_pushing)
    assert pending.status == "failed" and pending.error.startswith("never pushed")
    assert pushing.status == "unverified" and "could not verify the new secret" in pushing.error
    info = rec.get_execution(ctx.db, ex)
    assert (info.status, info.failed, info.unverified) == ("interrupted", 1, 1)
    assert lock_holder(ctx.db, spec.id) is None
    assert account_secrets(ctx.db, ids["bob"]).secret == "old-bob"  # not confirmed: the vault keeps both, current old


def test_reconcile_leaves_a_live_run_alone_but_not_one_whose_pid_was_reused(ctx: Context) -> None:
    ids = _inventory(ctx)
    spec = create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["down"]))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ex = _execution(ctx, pid=other.pid, task_id=spec.id)
        holder = f"{socket.gethostname()}:{other.pid}:run-x-st{process_start_time(other.pid)}"
        assert acquire_task_lock(ctx.db, spec.id, holder)
        rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "n1")])
        summary = reconcile(ctx)
        assert (summary.probed, summary.skipped_live, summary.interrupted) == (0, 1, [])
        assert rec.get_execution(ctx.db, ex).status == "running"

        # Same pid, but the lock was taken by a process that started at another time: that run is dead.
        from storage.locks import release_task_lock

        release_task_lock(ctx.db, spec.id, holder)
        assert acquire_task_lock(ctx.db, spec.id, holder.replace("-st", "-st1"))
        summary = reconcile(ctx)
        assert summary.interrupted == [ex] and summary.locks_released == 1
    finally:
        other.kill()
        other.wait()


def test_reconcile_in_the_running_process_only_spares_the_runs_it_really_runs(ctx: Context) -> None:
    ids = _inventory(ctx)
    ex = _execution(ctx, pid=os.getpid())  # left `running` by an earlier process that had our pid
    rec.add_pending_records(ctx.db, ex, [rec.PendingItem(ids["alice"], "n1")])
    assert reconcile(ctx).interrupted == [ex]


def test_reconcile_if_needed_is_a_no_op_when_all_is_settled(ctx: Context) -> None:
    _inventory(ctx)
    assert reconcile_if_needed(ctx).nothing_to_do


# -- the engine with unreachable hosts -------------------------------------------------------------
def test_an_unreachable_host_fails_its_accounts_without_ever_pushing(ctx: Context) -> None:
    _inventory(ctx)
    create_task(ctx, TaskSpec(name="t", usernames=["alice", "bob"], assets=["down"]))
    events: list[Event] = []
    info = run_task(ctx, "t", on_event=events.append)
    records = rec.list_records(ctx.db, execution_id=info.id)
    assert (info.status, info.failed) == ("failed", 2)
    assert all(r.status == "failed" and "Unable to connect" in r.error for r in records)
    assert all(r.started_at is None for r in records)  # never reached `pushing`
    assert any(isinstance(e, AssetFailed) for e in events)
    assert not rec.anything_unsettled(ctx.db)


def test_cancel_before_start_settles_everything_as_not_pushed(ctx: Context) -> None:
    _inventory(ctx)
    create_task(ctx, TaskSpec(name="t", usernames=["alice", "bob"], assets=["down"]))
    cancel = threading.Event()
    cancel.set()
    info = run_task(ctx, "t", cancel=cancel)
    assert info.status == "cancelled"
    assert {r.error for r in rec.list_records(ctx.db, execution_id=info.id)} == {"cancelled before push"}


def test_the_snapshot_and_log_never_hold_a_secret(ctx: Context) -> None:
    _inventory(ctx)
    create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["down"], secret_strategy="specific",
                              specific_secret="Sp3cific-Secret!"))
    info = run_task(ctx, "t")
    with ctx.db.read() as s:
        snapshot = s.get(Execution, info.id).snapshot
    text = json.dumps(snapshot) + rec.get_execution(ctx.db, info.id).log
    assert snapshot["has_specific_secret"] is True and "Sp3cific-Secret!" not in text and "old-alice" not in text


def test_a_task_already_running_is_refused(ctx: Context) -> None:
    _inventory(ctx)
    spec = create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["down"]))
    assert acquire_task_lock(ctx.db, spec.id, "otherhost:42:run-1")
    with pytest.raises(KeyturnError, match=r"already running \(otherhost:42:run-1\)"):
        run_task(ctx, "t")
