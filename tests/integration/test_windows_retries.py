"""Change windows and automatic retries against real sshd sandbox hosts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from core.context import Context
from core.events import AccountSettled, Event
from core.runs import OutsideWindow, run_with_options
from core.task_options import set_options
from storage import executions as rec
from storage.inventory import get_asset_row, upsert_account
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, make_task, vault
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd

USERS = ("u1", "u2", "u3", "u4", "u5", "u6")
WED_NOON = datetime(2026, 12, 2, 12, 30, tzinfo=timezone.utc)  # a Wednesday
WED_EVENING = datetime(2026, 12, 2, 18, 0, tzinfo=timezone.utc)


fleet = module_fleet(1, USERS, doc="One host with six users.")


host = fresh_host(USERS, remove_users=["late"], doc='The host, reset; a user "late" that a test may create is removed first.')


def test_a_scheduled_run_outside_its_windows_does_not_start(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], USERS)
    make_task(ctx, "night", [host], USERS)
    set_options(ctx, "night", windows=["Mon-Fri 01:00-05:00 Europe/Berlin"])
    with pytest.raises(OutsideWindow, match="outside its change windows"):
        run_with_options(ctx, "night", trigger="schedule", clock=lambda: WED_NOON)
    assert rec.list_records(ctx.db, task="night") == []


def test_a_run_reaching_the_window_end_starts_no_new_account_and_loses_nothing(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], USERS)
    make_task(ctx, "lunch", [host], USERS)
    set_options(ctx, "lunch", windows=["Wed 12:00-13:00 UTC"])
    now = [WED_NOON]

    def on_event(event: Event) -> None:
        if isinstance(event, AccountSettled):
            now[0] = WED_EVENING  # the window closes while the first account settles

    run = run_with_options(ctx, "lunch", trigger="schedule", clock=lambda: now[0], poll=0.02, on_event=on_event)
    assert run.stopped == "window closed"
    records = rec.list_records(ctx.db, execution_id=run.executions[0].id)
    statuses = [r.status for r in records]
    assert statuses.count("success") >= 1
    not_started = [r for r in records if r.status == "failed"]
    assert not_started and all(r.error == "cancelled before push" for r in not_started)
    assert "pending" not in statuses and "pushing" not in statuses
    # Whatever was changed and whatever was not: host and vault agree for every account.
    assert_vault_matches_hosts(ctx, [host], USERS)


def test_failed_accounts_are_retried_automatically_as_new_records(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ["u1"])
    late_password = new_password()
    with ctx.db.write() as s:  # the inventory knows "late" before the host has it
        upsert_account(ctx.db, s, get_asset_row(s, host.name), "late", secret=late_password)
    make_task(ctx, "again", [host], ["u1", "late"])
    set_options(ctx, "again", retries=2, retry_delay_minutes=5)
    seen: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, AccountSettled) and event.username == "late":
            seen.append(event.status)
            if len(seen) == 1:  # someone creates the user while the first attempt is reported failed
                host.add_user("late", late_password)

    run = run_with_options(ctx, "again", on_event=on_event, retry_delay_seconds=0)
    assert [e.trigger for e in run.executions] == ["manual", "retry"]
    assert seen == ["failed", "success"]
    first, second = (rec.list_records(ctx.db, execution_id=e.id) for e in run.executions)
    late_first = next(r for r in first if r.username == "late")
    assert "no such user" in late_first.error
    assert [(r.username, r.attempt, r.retry_of) for r in second] == [("late", 2, late_first.id)]
    assert host.password_works("late", vault(ctx, host.name, "late").secret or "")


def test_retries_stop_after_n_attempts(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ["u1"])
    with ctx.db.write() as s:
        upsert_account(ctx.db, s, get_asset_row(s, host.name), "late", secret=new_password())
    make_task(ctx, "never", [host], ["late"])
    set_options(ctx, "never", retries=2, retry_delay_minutes=1)
    run = run_with_options(ctx, "never", retry_delay_seconds=0)
    assert [e.trigger for e in run.executions] == ["manual", "retry", "retry"]
    assert [r.attempt for r in rec.list_records(ctx.db, task="never")] == [3, 2, 1]
