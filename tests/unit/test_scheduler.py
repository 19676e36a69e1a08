"""Scheduler timing with a controlled clock, slot claiming across schedulers, and the SMTP settings.

The runner is injected in place of core.engine.run_task: it writes a real Execution row to the real
database, so what these tests count is what a user would see in `keyturn records`. Runs against real
sshd hosts are in tests/integration/test_scheduler_runs.py.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import func, select

from core.config import load_settings
from core.context import Context, open_context
from core.errors import KeyturnError
from core.schedule import next_runs
from core.scheduler import Scheduler, claim, due_tasks, next_due_at, run_due
from core.tasks import create_task, edit_task, set_active
from storage.db import Database
from storage.inventory import upsert_asset
from storage.executions import execution_info
from storage.tables import Execution, utcnow
from storage.tasks import get_task
from storage.types import TaskSpec

# Storage, engine, scheduler, MFA rules: the same on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_backends

T0 = datetime(2030, 1, 6, 10, 0, 0, tzinfo=timezone.utc)  # a Sunday


class RecordingRunner:
    """Stands in for core.engine.run_task: records each run as a real Execution row and in a list."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, ctx: Context, task_name: str, *, trigger: str = "manual",
                 cancel: threading.Event | None = None, on_event=None):  # noqa: ANN001
        with self.lock:
            self.calls.append((task_name, trigger))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.seconds:
                (cancel or threading.Event()).wait(self.seconds)
            with ctx.db.write() as s:
                run = Execution(task_name=task_name, trigger=trigger, status="success", finished_at=utcnow())
                s.add(run)
                s.flush()
                return execution_info(run)
        finally:
            with self.lock:
                self.active -= 1


def executions(db: Database, task_name: str) -> int:
    """How many executions of the task are stored."""
    with db.read() as s:
        return s.exec(select(func.count()).select_from(Execution).where(Execution.task_name == task_name)).one()


def add_task(ctx: Context, name: str, **schedule) -> TaskSpec:  # noqa: ANN003
    """A periodic task on one asset, saved the way `keyturn task create` saves it."""
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="127.0.0.1")
    return create_task(ctx, TaskSpec(name=name, usernames=["alice"], assets=["web1"], **schedule))


def set_slot(ctx: Context, name: str, when: datetime) -> None:
    """Put the task's next slot at a known time (as if saved then)."""
    from storage.tasks import set_next_run

    set_next_run(ctx.db, get_task(ctx.db, name).id, when)


def test_interval_task_due_at_its_slot_not_a_second_before(ctx: Context) -> None:
    add_task(ctx, "hourly", interval_hours=1)
    set_slot(ctx, "hourly", T0)
    assert [t.name for t in due_tasks(ctx, T0 - timedelta(seconds=1))] == []
    assert [t.name for t in due_tasks(ctx, T0)] == ["hourly"]

    runner = RecordingRunner()
    outcomes = run_due(ctx, T0 + timedelta(seconds=20), runner=runner, notify=False)
    assert [(o.task_name, o.error) for o in outcomes] == [("hourly", "")]
    assert runner.calls == [("hourly", "schedule")]
    # The next slot stays on the hour grid, not 20 s after it.
    assert get_task(ctx.db, "hourly").next_run_at == T0 + timedelta(hours=1)
    assert run_due(ctx, T0 + timedelta(minutes=59, seconds=59), runner=runner, notify=False) == []
    assert len(run_due(ctx, T0 + timedelta(hours=1), runner=runner, notify=False)) == 1
    assert executions(ctx.db, "hourly") == 2


def test_cron_task_fires_on_its_cron_times(ctx: Context) -> None:
    add_task(ctx, "weekdays", cron="30 2 * * 1-5")
    set_slot(ctx, "weekdays", datetime(2030, 1, 7, 2, 30, tzinfo=timezone.utc))  # Monday 02:30
    runner = RecordingRunner()
    assert run_due(ctx, datetime(2030, 1, 7, 2, 29, 59, tzinfo=timezone.utc), runner=runner, notify=False) == []
    assert len(run_due(ctx, datetime(2030, 1, 7, 2, 30, tzinfo=timezone.utc), runner=runner, notify=False)) == 1
    assert get_task(ctx.db, "weekdays").next_run_at == datetime(2030, 1, 8, 2, 30, tzinfo=timezone.utc)
    # Friday's run is followed by Monday's: the weekend is skipped.
    set_slot(ctx, "weekdays", datetime(2030, 1, 11, 2, 30, tzinfo=timezone.utc))
    run_due(ctx, datetime(2030, 1, 11, 2, 30, 5, tzinfo=timezone.utc), runner=runner, notify=False)
    assert get_task(ctx.db, "weekdays").next_run_at == datetime(2030, 1, 14, 2, 30, tzinfo=timezone.utc)
    assert runner.calls == [("weekdays", "schedule")] * 2


def test_restart_after_missed_slots_runs_once(ctx: Context) -> None:
    add_task(ctx, "every2h", interval_hours=2)
    set_slot(ctx, "every2h", T0)
    runner = RecordingRunner()
    # The scheduler was down for ten slots; it starts 20 hours and 7 minutes later.
    back = T0 + timedelta(hours=20, minutes=7)
    assert len(run_due(ctx, back, runner=runner, notify=False)) == 1
    assert get_task(ctx.db, "every2h").next_run_at == T0 + timedelta(hours=22)
    assert run_due(ctx, back + timedelta(seconds=1), runner=runner, notify=False) == []
    assert runner.calls == [("every2h", "schedule")]


def test_new_task_waits_for_its_first_slot_and_start_time_is_respected(ctx: Context) -> None:
    """Issue 12 #7: a new task is first due at creation + interval (or its next cron time), never at once."""
    now = utcnow()
    add_task(ctx, "daily", interval_hours=24)
    add_task(ctx, "at3", cron="0 3 * * *")
    later = (now + timedelta(days=2)).replace(microsecond=0)
    add_task(ctx, "later", interval_hours=24, start_at=later)
    assert due_tasks(ctx, utcnow()) == []
    assert run_due(ctx, utcnow(), runner=RecordingRunner(), notify=False) == []
    three = next_runs(None, "0 3 * * *", now, count=1)[0]
    assert [t.name for t in due_tasks(ctx, three)] == ["at3"]
    assert sorted(t.name for t in due_tasks(ctx, later)) == ["at3", "daily", "later"]
    assert now < next_due_at(ctx, now) == min(three, next(t for t in due_tasks(ctx, later) if t.name == "daily").next_run_at)


def test_inactive_and_unscheduled_tasks_never_run(ctx: Context) -> None:
    add_task(ctx, "paused", interval_hours=1)
    set_active(ctx, "paused", False)
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="127.0.0.1")
    create_task(ctx, TaskSpec(name="manual-only", usernames=["alice"], assets=["web1"]))
    runner = RecordingRunner()
    assert run_due(ctx, utcnow() + timedelta(days=400), runner=runner, notify=False) == []
    # Re-activated: due at its next slot, not at once.
    set_active(ctx, "paused", True)
    assert run_due(ctx, utcnow(), runner=runner, notify=False) == []
    assert [o.task_name for o in run_due(ctx, utcnow() + timedelta(hours=1, seconds=5), runner=runner,
                                         notify=False)] == ["paused"]


def test_claim_wins_once_for_one_slot(ctx: Context) -> None:
    add_task(ctx, "t", interval_hours=1)
    set_slot(ctx, "t", T0)
    seen = due_tasks(ctx, T0)[0]
    assert claim(ctx, seen, T0) is True
    assert claim(ctx, seen, T0) is False  # the slot moved; a second scheduler that saw the old one loses
    assert claim(ctx, seen, T0 - timedelta(hours=1)) is False  # not due yet


def test_two_schedulers_on_one_database_run_a_due_task_once(settings, ctx: Context) -> None:  # noqa: ANN001
    for i in range(6):
        add_task(ctx, f"t{i}", interval_hours=1)
        set_slot(ctx, f"t{i}", T0)
    runner = RecordingRunner(seconds=0.05)
    contexts = [open_context(settings, operator="scheduler", source="test") for _ in range(4)]
    barrier = threading.Barrier(len(contexts))
    results: list[list] = [[] for _ in contexts]

    def one(i: int) -> None:
        barrier.wait()
        results[i] = run_due(contexts[i], T0 + timedelta(seconds=1), runner=runner, notify=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(contexts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in contexts:
        c.close()
    assert sorted(name for name, _ in runner.calls) == [f"t{i}" for i in range(6)]
    assert sum(len(r) for r in results) == 6
    assert all(executions(ctx.db, f"t{i}") == 1 for i in range(6))


def test_several_due_tasks_run_concurrently_but_bounded(ctx: Context) -> None:
    for i in range(5):
        add_task(ctx, f"c{i}", interval_hours=1)
        set_slot(ctx, f"c{i}", T0)
    runner = RecordingRunner(seconds=0.3)
    started = time.monotonic()
    outcomes = run_due(ctx, T0, runner=runner, notify=False, max_workers=2)
    assert len(outcomes) == 5
    assert runner.max_active == 2
    assert time.monotonic() - started >= 0.9  # three waves of 0.3 s with two workers


def test_a_run_that_cannot_start_is_reported_and_the_slot_still_moves(ctx: Context) -> None:
    add_task(ctx, "busy", interval_hours=1)
    set_slot(ctx, "busy", T0)

    def busy_runner(ctx: Context, task_name: str, **_: object):  # noqa: ANN202
        raise KeyturnError(f"task {task_name} is already running")

    outcomes = run_due(ctx, T0, runner=busy_runner, notify=False)
    assert outcomes[0].error == "task busy is already running"
    assert get_task(ctx.db, "busy").next_run_at == T0 + timedelta(hours=1)


def test_run_longer_than_its_period_does_not_queue_up_missed_slots(ctx: Context) -> None:
    add_task(ctx, "slow", interval_hours=1)
    set_slot(ctx, "slow", T0)
    clock = {"now": T0}

    def slow_runner(ctx: Context, task_name: str, **_: object):  # noqa: ANN202
        clock["now"] = T0 + timedelta(hours=3, minutes=10)  # the run took 3 h 10 min
        return RecordingRunner()(ctx, task_name, trigger="schedule")

    run_due(ctx, T0, runner=slow_runner, notify=False, clock=lambda: clock["now"])
    assert get_task(ctx.db, "slow").next_run_at == T0 + timedelta(hours=4)


def test_editing_the_schedule_during_a_run_wins(ctx: Context) -> None:
    add_task(ctx, "edited", interval_hours=1)
    set_slot(ctx, "edited", T0)

    def editing_runner(c: Context, task_name: str, **_: object):  # noqa: ANN202
        edit_task(c, task_name, interval_hours=None, cron="0 5 * * *")
        return RecordingRunner()(c, task_name, trigger="schedule")

    run_due(ctx, T0, runner=editing_runner, notify=False, clock=lambda: T0 + timedelta(hours=2))
    slot = get_task(ctx.db, "edited").next_run_at
    assert slot is not None and (slot.hour, slot.minute) == (5, 0)


def test_serve_wakes_early_for_a_near_slot_and_stops_cleanly(ctx: Context) -> None:
    add_task(ctx, "soon", interval_hours=1)
    set_slot(ctx, "soon", utcnow() + timedelta(seconds=0.6))
    runner = RecordingRunner(seconds=30)  # stands for a long run: only the cancel Event ends it
    sched = Scheduler(ctx, runner=runner, poll_seconds=60, notify=False)
    thread = threading.Thread(target=sched.serve)
    thread.start()
    deadline = time.monotonic() + 5
    while not runner.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.calls == [("soon", "schedule")]  # long before the 60 s poll
    sched.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert sched.cancel.is_set()
    assert executions(ctx.db, "soon") == 1


def test_smtp_settings_come_from_the_environment(keyturn_env: dict[str, str]) -> None:
    env = {**keyturn_env, "KEYTURN_SMTP_HOST": "mail.example.net", "KEYTURN_SMTP_PORT": "2525",
           "KEYTURN_SMTP_STARTTLS": "yes", "KEYTURN_SMTP_SSL": "0", "KEYTURN_SMTP_USER": "keyturn-bot",
           "KEYTURN_SMTP_FROM": "rotation@example.net", "KEYTURN_SCHEDULER_POLL_SECONDS": "5"}
    s = load_settings(env=env)
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_ssl, s.smtp_user, s.smtp_from) == (
        "mail.example.net", 2525, True, False, "keyturn-bot", "rotation@example.net")
    assert s.scheduler_poll_seconds == 5.0


def test_smtp_settings_from_the_config_file_and_a_bad_port_named(keyturn_env: dict[str, str], tmp_path) -> None:  # noqa: ANN001
    from pathlib import Path

    from core.errors import ConfigError

    Path(keyturn_env["KEYTURN_CONFIG"]).write_text('[smtp]\nhost = "relay"\nport = 465\nssl = true\n')
    s = load_settings(env=keyturn_env)
    assert (s.smtp_host, s.smtp_port, s.smtp_ssl) == ("relay", 465, True)
    with pytest.raises(ConfigError, match="KEYTURN_SMTP_PORT"):
        load_settings(env={**keyturn_env, "KEYTURN_SMTP_PORT": "twenty-five"})


def test_an_overdue_slot_of_a_running_task_does_not_make_the_loop_spin(ctx: Context) -> None:
    from concurrent.futures import Future

    add_task(ctx, "long", interval_hours=1)
    set_slot(ctx, "long", utcnow() - timedelta(minutes=5))
    sched = Scheduler(ctx, runner=RecordingRunner(), poll_seconds=30, notify=False)
    try:
        assert sched._sleep_seconds() == pytest.approx(0.1)  # idle and overdue: look again at once
        sched._running[get_task(ctx.db, "long").id] = Future()  # its run outlasts its period
        assert sched._sleep_seconds() == 30
    finally:
        sched.shutdown()
