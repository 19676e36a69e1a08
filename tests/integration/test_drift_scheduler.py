"""The scheduler runs heartbeats and honours change windows, against a real sshd sandbox host."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.context import Context
from core.scheduler import due_tasks, run_due
from core.task_options import set_options
from storage import executions as rec
from storage.drift import get_task_options, latest_heartbeats
from storage.tasks import get_task
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_rotation import build_inventory, make_task
from tests.sandbox import SandboxHost

pytestmark = pytest.mark.sshd


fleet = module_fleet(1, ["alice"], doc="One host with alice.")


host = fresh_host(["alice"])


def test_the_scheduler_runs_a_due_heartbeat_once_and_moves_its_slot(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ["alice"])
    make_task(ctx, "beat", [host], ["alice"])
    set_options(ctx, "beat", heartbeat_interval_hours=6)
    task_id = get_task(ctx.db, "beat").id
    assert task_id is not None
    due = get_task_options(ctx.db, task_id).next_heartbeat_at
    assert due is not None
    assert run_due(ctx, due - timedelta(minutes=1), notify=False) == [] and latest_heartbeats(ctx.db) == []
    run_due(ctx, due, notify=False)
    assert [(h.username, h.status) for h in latest_heartbeats(ctx.db)] == [("alice", "ok")]
    nxt = get_task_options(ctx.db, task_id).next_heartbeat_at
    assert nxt is not None and nxt > due
    run_due(ctx, due, notify=False)  # the slot was taken: a second scheduler at the same time does nothing
    assert len(latest_heartbeats(ctx.db)) == 1
    assert rec.list_records(ctx.db, task="beat") == []  # a heartbeat never changes a secret


def test_a_due_slot_waits_for_its_window_then_runs(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ["alice"])
    make_task(ctx, "night", [host], ["alice"], interval_hours=24)
    task_id = get_task(ctx.db, "night").id
    wednesday_noon = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    set_options(ctx, "night", windows=["Mon-Fri 01:00-05:00 UTC"])
    assert [t.id for t in due_tasks(ctx, wednesday_noon + timedelta(days=400))] == []
    assert [t.id for t in due_tasks(ctx, datetime(2027, 1, 6, 2, 0, tzinfo=timezone.utc))] == [task_id]
    # A window that holds now: the scheduled run goes ahead (with the engine, for real).
    set_options(ctx, "night", windows=["daily 00:00-24:00 UTC"])
    outcomes = run_due(ctx, datetime.now(timezone.utc) + timedelta(days=2), notify=False)
    assert [(o.task_name, o.execution.status if o.execution else o.error) for o in outcomes] == [("night", "success")]
