"""Rules SQLite's single writer gave for free hold with many processes at once, on SQLite and on PostgreSQL.

Each test starts several real processes (forked, each opening its own connections; a forked child ends with
os._exit, so the parent's inherited connections are never touched), lines them up on a barrier, lets them
hit the same row at once, and then checks what the database holds.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from core import operators as ops
from core.audit import list_events, record_event, verify_chain
from core.config import Settings
from core.context import Context, open_context
from core.mfa import MfaFailed, MfaLocked, code_at, verify_code
from core.scheduler import claim, due_tasks
from storage import executions as rec
from storage.inventory import upsert_account, upsert_asset
from storage.locks import acquire_task_lock
from storage.scheduling import ScheduledTask
from storage.tables import TaskLock
from tests.unit.test_mfa import secret_of
from tests.unit.test_scheduler import add_task, set_slot

pytestmark = pytest.mark.both_backends

PROCESSES = 6
T0 = datetime(2025, 3, 1, 12, 0, 10, tzinfo=timezone.utc)


# -- running one function in several processes at once -------------------------------------------------
def _child(fn: Callable[..., Any], index: int, settings: Settings, args: tuple, barrier: Any, out: Any) -> None:
    ctx = open_context(settings, operator=f"p{index}", source="race")
    try:
        barrier.wait(timeout=120)
        out.put((index, "ok", fn(ctx, index, *args)))
    except MfaLocked as exc:
        out.put((index, "locked", str(exc)))
    except MfaFailed as exc:
        out.put((index, "failed", (str(exc), exc.remaining)))
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        out.put((index, "error", traceback.format_exc()))
    finally:
        ctx.close()


def race(settings: Settings, fn: Callable[..., Any], *args: Any, n: int = PROCESSES) -> list[tuple[str, Any]]:
    """Run fn(ctx, index, *args) in n processes released together; their (kind, value) results by index."""
    mp = multiprocessing.get_context("fork")
    barrier, out = mp.Barrier(n), mp.Queue()
    procs = [mp.Process(target=_child, args=(fn, i, settings, args, barrier, out)) for i in range(n)]
    for p in procs:
        p.start()
    results: dict[int, tuple[str, Any]] = {}
    for _ in procs:
        index, kind, value = out.get(timeout=240)
        results[index] = (kind, value)
    for p in procs:
        p.join(60)
    errors = [v for k, v in results.values() if k == "error"]
    assert not errors, "a racing process failed:\n" + "\n".join(errors)
    return [results[i] for i in range(n)]


# -- the racing bodies -------------------------------------------------------------------------------------
def _verify(ctx: Context, _i: int, code: str) -> str:
    verify_code(ctx, "alice", code, now=T0)
    return "accepted"


def _append(ctx: Context, i: int, count: int) -> int:
    for n in range(count):
        record_event(ctx, "test.race", "process", str(i), {"n": n})
    return count


def _take_lock(ctx: Context, i: int, task_id: int) -> bool:
    return acquire_task_lock(ctx.db, task_id, f"p{i}", now=T0)


def _claim(ctx: Context, _i: int, seen: ScheduledTask, now: datetime) -> bool:
    return claim(ctx, seen, now)


@pytest.fixture
def alice(ctx: Context) -> str:
    """A confirmed operator alice; her TOTP secret."""
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    secret = secret_of(enrolment.uri)
    earlier = T0 - timedelta(minutes=5)
    ops.confirm_enrolment(ctx, "alice", code_at(secret, earlier), now=earlier)
    return secret


# -- the rules -------------------------------------------------------------------------------------------
def test_one_code_sent_by_many_processes_at_once_is_accepted_once(ctx: Context, settings: Settings, alice: str) -> None:
    """Five processes, one code: one is accepted, four are refused as replays and each replay is counted."""
    results = race(settings, _verify, code_at(alice, T0), n=5)
    assert [k for k, _ in results].count("ok") == 1, results
    refused = [v for k, v in results if k == "failed"]
    assert all("already used" in message for message, _ in refused)
    assert sorted(left for _, left in refused) == [1, 2, 3, 4]
    assert len(list_events(ctx, action="mfa.ok")) == 1 and verify_chain(ctx).ok


def test_wrong_codes_from_many_processes_at_once_are_each_counted(ctx: Context, settings: Settings, alice: str) -> None:
    """Eight wrong codes at once with five allowed: four count down, the fifth locks, three meet the lock."""
    wrong = "123456" if code_at(alice, T0) != "123456" else "654321"
    results = race(settings, _verify, wrong, n=8)
    failed = sorted(v[1] for k, v in results if k == "failed")
    assert failed == [1, 2, 3, 4], results  # tries left after each counted failure: none lost, none twice
    assert [k for k, _ in results].count("locked") == 4
    actions = [e.action for e in list_events(ctx, action="mfa.*")]
    assert (actions.count("mfa.failed"), actions.count("mfa.lockout"), actions.count("mfa.locked")) == (4, 1, 3)
    assert verify_chain(ctx).ok


def test_audit_appends_from_many_processes_keep_one_chain(ctx: Context, settings: Settings) -> None:
    before = verify_chain(ctx).checked
    race(settings, _append, 15)
    result = verify_chain(ctx)
    assert result.ok, result.reason
    assert result.checked == before + PROCESSES * 15


def test_a_task_lock_taken_by_many_processes_at_once_has_one_holder(ctx: Context, settings: Settings) -> None:
    task = add_task(ctx, "t", interval_hours=1)
    results = race(settings, _take_lock, task.id)
    winners = [i for i, (_, got) in enumerate(results) if got]
    assert len(winners) == 1, results
    with ctx.db.read() as s:
        assert s.get(TaskLock, task.id).holder == f"p{winners[0]}"


def test_an_expired_task_lock_is_taken_over_by_one_process(ctx: Context, settings: Settings) -> None:
    task = add_task(ctx, "t", interval_hours=1)
    assert acquire_task_lock(ctx.db, task.id, "dead-host:1", ttl=timedelta(minutes=1), now=T0 - timedelta(hours=1))
    results = race(settings, _take_lock, task.id)
    winners = [i for i, (_, got) in enumerate(results) if got]
    assert len(winners) == 1, results
    with ctx.db.read() as s:
        assert s.get(TaskLock, task.id).holder == f"p{winners[0]}"


def test_a_due_slot_claimed_by_many_processes_at_once_goes_to_one(ctx: Context, settings: Settings) -> None:
    add_task(ctx, "t", interval_hours=1)
    set_slot(ctx, "t", T0)
    now = T0 + timedelta(seconds=1)
    seen = due_tasks(ctx, now)[0]  # every scheduler saw the slot due before any claimed it
    results = race(settings, _claim, seen, now)
    assert [got for _, got in results].count(True) == 1, results


def _claim_account(ctx: Context, i: int, account_id: int) -> bool:
    execution_id = rec.create_execution(ctx.db, task_id=None, task_name=f"task{i}", trigger="manual", operator="",
                                        snapshot={}, pid=os.getpid(), hostname="race")
    ids, skipped = rec.add_claimed_records(ctx.db, execution_id, [rec.PendingItem(account_id, f"new-{i}")])
    return ids[0] not in skipped


def test_one_account_claimed_by_many_runs_at_once_goes_to_one(ctx: Context, settings: Settings) -> None:
    """Two tasks over one account (DESIGN.md point 6): six runs write their `pending` records at once and only
    one holds the account; the others' records are failed as skipped. On PostgreSQL the accounts are read
    FOR UPDATE, so a run waits for another's commit and sees its claim (a plain read saw none, and more than
    one run pushed)."""
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "db1", address="127.0.0.1", port=5432, platform="postgresql")
        account, _ = upsert_account(ctx.db, s, asset, "app", secret="old")
    results = race(settings, _claim_account, account.id)
    assert [got for _, got in results].count(True) == 1, results
    records = rec.list_records(ctx.db)
    assert sorted(r.status for r in records) == ["failed"] * (PROCESSES - 1) + ["pending"]
    assert all(r.error.startswith("skipped: the account is being changed by execution") for r in records
               if r.status == "failed")
