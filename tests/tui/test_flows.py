"""Whole flows by keys alone: create a task in the form, run it on real sshd hosts, find and retry records,
and edit, copy, toggle and delete tasks. What is asserted is what the screen shows and what the hosts hold."""

from __future__ import annotations

import asyncio

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog

from core import tasks
from core.context import Context, open_context
from storage import executions as rec
from storage.inventory import account_secrets, get_account_row, pin_host_key, upsert_account, upsert_asset
from storage.queries import task_names
from tests.tui.helpers import settled, until
from tui.app import KeyturnApp
from tui.widgets.run_panel import RunState

SIZE = (100, 32)


async def _type(pilot: Pilot, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def _rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _vault_password(ctx: Context, asset: str, user: str) -> str | None:
    with ctx.db.read() as s:
        acc = get_account_row(s, asset, user, "password")
    return account_secrets(ctx.db, acc.id).secret


@pytest.mark.sshd
def test_create_run_find_and_retry(settings, sandbox_fleet) -> None:
    """Form -> run -> log says finished -> hosts hold the vault's passwords -> a failed record retried."""
    fleet = sandbox_fleet(2, users=["alice"])
    h1, h2 = sorted(fleet.hosts, key=lambda h: h.name)
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="tester", source="pytest")
    with ctx.db.write() as s:
        for h in (h1, h2):
            asset, _ = upsert_asset(s, h.name, address=h.address, port=h.port)
            key_type, b64 = h.host_key.split()[:2]
            pin_host_key(s, asset, key_type, b64, "test")
            upsert_account(ctx.db, s, asset, h.admin_user, secret=h.admin_password, privileged=True)
            upsert_account(ctx.db, s, asset, "alice", secret=h.passwords["alice"])
    old = {h.name: h.passwords["alice"] for h in (h1, h2)}

    async def flow() -> None:
        app = KeyturnApp(ctx)
        async with app.run_test(size=SIZE) as pilot:
            # Create the task through the form: name, accounts, both assets, save.
            await pilot.press("t", "n")
            await _type(pilot, "rotate-alice")
            await pilot.press("tab")
            await _type(pilot, "alice")
            await pilot.press("tab", "tab", "space", "down", "space")
            # The target preview is debounced: wait for its line, not a fixed time.
            await until(pilot, lambda: "2 accounts on 2 assets" in str(app.screen.query_one("#form-preview").render()),
                        "the preview", timeout=10)
            await pilot.press("ctrl+s")
            await settled(pilot)
            assert task_names(ctx.db) == ["rotate-alice"]
            table = app.screen.query_one("#tasks-table", DataTable)
            assert _rows(table)[0][0] == "rotate-alice"

            # Host 2 is down: its account must fail and keep its old password.
            h2.stop()
            await pilot.press("r", "y")  # r asks before a run
            run: RunState = list(app.runs.values())[-1]
            await until(pilot, lambda: run.finished, "the run to finish", timeout=90)
            await pilot.press("h")
            await pilot.pause()
            log = app.screen.query_one("#run-log", RichLog)
            text = "\n".join(line.text for line in log.lines)
            assert f"execution {run.execution_id} finished" in text
            assert (run.succeeded, run.failed + run.unverified) == (1, 1)
            new1 = _vault_password(ctx, h1.name, "alice")
            assert new1 != old[h1.name] and h1.password_works("alice", new1)
            h2.start()
            assert h2.password_works("alice", old[h2.name])

            # Find the failed record in Records by searching for host 2, then retry it with y.
            await pilot.press("s", "slash")
            await _type(pilot, h2.name)
            await pilot.press("enter")
            await pilot.pause()
            records = app.screen.query_one("#records-table", DataTable)
            rows = _rows(records)
            assert len(rows) == 1 and rows[0][2] == h2.name and rows[0][6] in ("failed", "unverified")
            await pilot.press("y")
            retry: RunState = list(app.runs.values())[-1]
            assert retry.kind == "retry"
            await until(pilot, lambda: retry.finished, "the retry to finish", timeout=90)
            assert retry.status == "success", list(retry.lines)
            await pilot.press("f5")
            await pilot.pause()
            rows = _rows(records)
            assert rows[0][6] == "success" and rows[0][2] == h2.name
            new2 = _vault_password(ctx, h2.name, "alice")
            assert new2 != old[h2.name] and h2.password_works("alice", new2)
            assert rec.list_records(ctx.db, task="rotate-alice", status="success")

    try:
        asyncio.run(flow())
    finally:
        ctx.close()


def test_edit_copy_toggle_delete(demo_ctx: Context) -> None:
    """Rename a task in the form, copy it, switch it inactive, delete the copy after confirming."""

    async def flow() -> None:
        app = KeyturnApp(demo_ctx, mfa_session=unlocked(demo_ctx))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("t")
            table = app.screen.query_one("#tasks-table", DataTable)
            assert _rows(table)[0][0] == "break-glass"
            # Edit: the name field has the focus; rename and save.
            await pilot.press("e", "end")
            await _type(pilot, "-2")
            await pilot.press("ctrl+s")
            await settled(pilot)
            assert "break-glass-2" in task_names(demo_ctx.db) and "break-glass" not in task_names(demo_ctx.db)
            assert tasks.get_task(demo_ctx, "break-glass-2").specific_secret == "Break-Glass-2025!"
            # Copy: the prompt proposes NAME-copy; Enter accepts.
            await pilot.press("c")
            await pilot.pause()
            await pilot.press("enter")
            await settled(pilot)
            assert "break-glass-2-copy" in task_names(demo_ctx.db)
            assert app.screen.query_one("#tasks-table", DataTable).get_row_at(
                app.screen.query_one("#tasks-table", DataTable).cursor_row)[0].plain == "break-glass-2-copy"
            # Toggle active on the copy.
            await pilot.press("a")
            await settled(pilot)
            assert tasks.get_task(demo_ctx, "break-glass-2-copy").active is False
            # Delete asks first; n keeps it, d then y deletes it.
            await pilot.press("d", "n")
            await pilot.pause()
            assert "break-glass-2-copy" in task_names(demo_ctx.db)
            await pilot.press("d", "y")
            await pilot.pause()
            assert "break-glass-2-copy" not in task_names(demo_ctx.db)
            assert "break-glass-2-copy" not in [r[0] for r in _rows(app.screen.query_one("#tasks-table", DataTable))]

    asyncio.run(flow())


def test_form_refuses_until_fields_pass(demo_ctx: Context) -> None:
    """A cron line with four fields keeps the form open with the cron error; nothing is saved."""

    async def flow() -> None:
        app = KeyturnApp(demo_ctx, mfa_session=unlocked(demo_ctx))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("t", "n")
            form = app.screen
            form.query_one("#name").value = "nightly"
            form.query_one("#accounts").value = "deploy"
            form.query_one("#periodic").value = "cron"
            await pilot.pause()
            form.query_one("#cron").value = "0 3 * *"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.screen is form
            assert "cron:" in str(form.query_one("#err-schedule").render())
            assert "targets:" in str(form.query_one("#err-assets").render())
            assert "nightly" not in task_names(demo_ctx.db)
            form.query_one("#cron").value = "0 3 * * 1"
            await pilot.pause()
            assert "next runs: 2025-" in str(form.query_one("#next-runs").render()) or "next runs:" in str(
                form.query_one("#next-runs").render())

    asyncio.run(flow())


def unlocked(ctx):  # type: ignore[no-untyped-def]
    """An MFA session in which the acting operator gave a code a moment ago (task edits need one)."""
    from datetime import timedelta

    from core.mfa import MfaSession

    mfa = MfaSession(ctx.settings)
    mfa._until[ctx.operator] = mfa.now() + timedelta(minutes=10)
    return mfa


def test_non_operator_may_browse_but_not_run_or_edit(tmp_path) -> None:
    """Once an operator is enrolled, someone else opening the app sees everything but changes nothing."""
    import pyotp

    from core.config import load_settings
    from core.context import open_context
    from core.operators import add_operator, confirm_enrolment, start_enrolment
    from storage.types import TaskSpec
    from core.tasks import create_task
    from storage import inventory
    from tui.app import KeyturnApp

    settings = load_settings(env={"KEYTURN_HOME": str(tmp_path / "h"), "KEYTURN_CONFIG": str(tmp_path / "c.toml")})
    setup = open_context(settings, operator="alice")
    add_operator(setup, "alice", "alice@example.org")
    enrolment = start_enrolment(setup, "alice")
    confirm_enrolment(setup, "alice", pyotp.parse_uri(enrolment.uri).now())
    from core.mfa import MfaSession

    setup.mfa = MfaSession(settings)  # creating a task needs a fresh code: alice's unlock (as the app keeps one)
    setup.mfa._until["alice"] = setup.mfa.now() + __import__("datetime").timedelta(minutes=5)
    with setup.db.write() as s:
        inventory.upsert_asset(s, "web1", address="192.0.2.1")
    create_task(setup, TaskSpec(name="t1", usernames=["app"], assets=["web1"]))
    setup.close()

    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="mallory")
    app = KeyturnApp(ctx)

    async def flow() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("t")
            await pilot.pause()
            await pilot.press("r")
            await pilot.pause()
            assert app.active_runs() == [] and not app.runs
            await pilot.press("n")
            await pilot.pause()
            assert type(app.screen).__name__ != "TaskFormModal"
            shown = [n.message for n in app._notifications]
            assert any("'mallory' is not a keyturn operator" in m for m in shown), shown
    asyncio.run(flow())
    ctx.close()


def test_trust_shows_the_fingerprint_before_pinning_and_warns_on_a_changed_key(settings, sandbox_fleet) -> None:
    """Inventory `k` against a real sshd: nothing is pinned until the user says yes to the fingerprint shown;
    after the host's key changes, the dialog warns with both fingerprints and `n` keeps the old pin."""
    from storage.inventory import get_asset
    from storage.types import fingerprint_sha256
    from tui.modals.confirm import ConfirmModal

    host = sandbox_fleet(1).hosts[0]
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="tester", source="pytest")
    with ctx.db.write() as s:
        upsert_asset(s, host.name, address=host.address, port=host.port)
    served = fingerprint_sha256(host.host_key.split()[1])

    async def wait_for_confirm(pilot: Pilot) -> ConfirmModal:
        for _ in range(200):
            await pilot.pause(0.05)
            if isinstance(pilot.app.screen, ConfirmModal):
                return pilot.app.screen
        raise AssertionError("no confirmation dialog appeared")

    async def flow() -> None:
        app = KeyturnApp(ctx)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("i")
            await pilot.pause()
            await pilot.press("k")
            dialog = await wait_for_confirm(pilot)
            assert served in dialog.body and "WARNING" not in dialog.body
            assert get_asset(ctx.db, host.name).host_keys == ()  # shown, not pinned yet
            await pilot.press("y")
            await settled(pilot)
            assert [k.fingerprint for k in get_asset(ctx.db, host.name).host_keys
                    if k.key_type == "ssh-ed25519"] == [served]

            new_line = host.replace_host_key()
            await pilot.press("k")
            dialog = await wait_for_confirm(pilot)
            assert "WARNING" in dialog.body and "CHANGED" in dialog.body
            assert served in dialog.body and fingerprint_sha256(new_line.split()[1]) in dialog.body
            await pilot.press("n")
            await pilot.pause()
            assert served in [k.fingerprint for k in get_asset(ctx.db, host.name).host_keys]

    asyncio.run(flow())
    ctx.close()


@pytest.mark.sshd
def test_tasks_w_queues_a_run_for_workers_and_follows_it(settings, sandbox_fleet, keyturn_env) -> None:  # noqa: ANN001
    """Tasks W: the run is queued, a real `keyturn worker --once` process changes the host, the app's run
    panel follows it to the end, and the host accepts the vault's new password (issue 15)."""
    import subprocess
    import sys

    from storage.types import TaskSpec
    from tests.conftest import ROOT

    host = sandbox_fleet(1, users=["alice"]).hosts[0]
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="tester", source="pytest")
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, host.name, address=host.address, port=host.port)
        key_type, b64 = host.host_key.split()[:2]
        pin_host_key(s, asset, key_type, b64, "test")
        upsert_account(ctx.db, s, asset, host.admin_user, secret=host.admin_password, privileged=True)
        upsert_account(ctx.db, s, asset, "alice", secret=host.passwords["alice"])
    tasks.create_task(ctx, TaskSpec(name="queued", usernames=["alice"], assets=[host.name]))
    old = host.passwords["alice"]
    worker: list[subprocess.Popen[str]] = []

    async def flow() -> None:
        app = KeyturnApp(ctx)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("t")
            await until(pilot, lambda: app.screen.query("#tasks-table") and
                        app.screen.query_one("#tasks-table", DataTable).row_count == 1, "the task in its table", timeout=90)
            await pilot.press("W", "y")
            await until(pilot, lambda: bool(app.runs), "the run to start", timeout=90)
            run: RunState = list(app.runs.values())[-1]
            await until(pilot, lambda: run.execution_id is not None or run.finished, "the run queued", timeout=90)
            # queued: nothing changes the host until a worker takes it (a run that ended here says why)
            assert not run.finished and run.execution_id is not None, ([str(t) for t in run.lines], [n.message for n in app._notifications])
            worker.append(subprocess.Popen([sys.executable, "-m", "tui", "worker", "--once", "--poll", "0.2"],
                                           cwd=ROOT, env=keyturn_env, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            await until(pilot, lambda: run.finished, "the worker to finish the run", timeout=120)
            assert (run.succeeded, run.failed, run.unverified) == (1, 0, 0)

    try:
        asyncio.run(flow())
        out, err = worker[0].communicate(timeout=120)
        assert worker[0].returncode == 0, out + err
        new = _vault_password(ctx, host.name, "alice")
        assert new and new != old and host.password_works("alice", new) and not host.password_works("alice", old)
    finally:
        for p in worker:
            if p.poll() is None:
                p.kill()
        ctx.close()
