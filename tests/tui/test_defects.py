"""Issue 12's defects, each shown by keys as a user over a laggy SSH link would meet it (fails on the old app).

Waits are on the app's own state (a screen shown, a worker finished, a toast posted), never on fixed pauses,
except where the assertion is that nothing happens while the app sits idle.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from textual import events
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Select, SelectionList

from core.context import Context
from core.events import AccountSettled, ExecutionFinished, ExecutionStarted
from storage.inventory import upsert_asset
from tests.tui.demo_data import NOW
from tests.tui.helpers import settled, sync, toasts, until
from tui.app import KeyturnApp
from tui.widgets.run_panel import RunPanel

SIZE = (80, 24)


async def burst(pilot: Pilot, *keys: str) -> None:
    """Deliver keys as one burst, as a laggy SSH link does: all queued before the app handles the first."""
    driver = pilot.app._driver
    assert driver is not None
    for key in keys:
        char = key if len(key) == 1 else None
        if key == "space":
            char = " "
        event = events.Key(key, char)
        event.set_sender(pilot.app)
        driver.send_message(event)
    await pilot.pause()
    await until(pilot, lambda: not pilot.app._key_backlog if hasattr(pilot.app, "_key_backlog") else True,
                "the burst to be handled")
    await pilot.pause()


def feed_finished_run(app: KeyturnApp, title: str, execution_id: int) -> None:
    """A run that went through the engine's events to its end (as a worker would post them)."""
    run = app._new_run(title, "run")
    t = [NOW + timedelta(seconds=i) for i in range(4)]
    app.record_event(run, ExecutionStarted(execution_id, title, "manual", 2, 1, at=t[0]))
    app.record_event(run, AccountSettled(execution_id, "web-01", "app", 1, "success", at=t[1]))
    app.record_event(run, AccountSettled(execution_id, "web-01", "deploy", 2, "failed", "sudo: no", at=t[2]))
    app.record_event(run, ExecutionFinished(execution_id, "partial", 2, 1, 1, 0, 3.0, at=t[3]))


# -- 1. idle CPU ---------------------------------------------------------------------------------------
@sync
async def test_idle_app_after_two_runs_renders_nothing(demo_ctx: Context, monkeypatch) -> None:
    """Two finished runs and a finished empty reconcile, h then o: while idle no handler runs, nothing renders."""
    calls = {"show": 0, "render": 0}
    original_show = RunPanel.show
    original_render = Widget.render_lines

    def counting_show(self, *args, **kwargs):
        calls["show"] += 1
        return original_show(self, *args, **kwargs)

    def counting_render(self, *args, **kwargs):
        calls["render"] += 1
        return original_render(self, *args, **kwargs)

    monkeypatch.setattr(RunPanel, "show", counting_show)
    monkeypatch.setattr(Widget, "render_lines", counting_render)
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        feed_finished_run(app, "web-passwords", 41)
        feed_finished_run(app, "db-keys", 42)
        reconcile = app._new_run("reconcile", "reconcile")
        app._publish(reconcile, reconcile.note("nothing to settle"))
        reconcile.status = "success"
        app._publish(reconcile, None)
        await pilot.press("h")
        await settled(pilot)
        await pilot.press("o")
        await settled(pilot)
        # The app draws the other modes' screens ahead once, while idle after start (tui/app.py
        # _prebuild_next): bounded work that ends. What must not happen is work that never does.
        await until(pilot, lambda: app.prebuilt, "the screens built ahead")
        for name in ("history", "overview"):
            calls["show"] = calls["render"] = 0
            # A fixed wait on purpose: the test asserts that nothing happens while idle (no key, no run, nothing
            # on screen changes), and there is no event to wait for.
            await pilot.pause(0.5)
            assert calls == {"show": 0, "render": 0}, f"idle in {app.current_mode}: {calls}"
            if name == "history":
                await pilot.press("h")
                await settled(pilot)


# -- 2. keystrokes in one burst --------------------------------------------------------------------------
@sync
async def test_burst_keys_each_go_to_the_field_focused_when_handled(demo_ctx: Context) -> None:
    """'fast1', Tab, 'deploy' in one burst: Name is fast1 and Accounts deploy (task form, then asset form)."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t", "n")
        await until(pilot, lambda: app.screen.focused is not None and app.screen.focused.id == "name", "the form")
        await burst(pilot, *"fast1", "tab", *"deploy", "tab", "tab", "space")
        assert app.screen.query_one("#name", Input).value == "fast1"
        assert app.screen.query_one("#accounts", Input).value == "deploy"
        await burst(pilot, "escape")
        await pilot.press("y")  # a filled form asks before it is thrown away
        await until(pilot, lambda: app.current_mode == "tasks" and len(app.screen_stack) == 1, "the task list")

        await pilot.press("i", "n")
        await until(pilot, lambda: app.screen.focused is not None and app.screen.focused.id == "name", "the form")
        await burst(pilot, *"web-9", "tab", *"10.0.0.9", "tab", "backspace", "backspace", *"2222")
        form = app.screen
        assert form.query_one("#name", Input).value == "web-9"
        assert form.query_one("#address", Input).value == "10.0.0.9"
        assert form.query_one("#port", Input).value == "2222"


# -- 3. background failures reach the user -----------------------------------------------------------------
BAD_FILE = Path(__file__).resolve().parent.parent / "data" / "inventory" / "bad" / "bad_port.csv"


def test_screen_worker_failures_show_the_words_the_cli_prints(demo_ctx: Context, keyturn_cli) -> None:
    """Inventory f with a bad file and k on a host that refuses: a toast with the CLI's error text, each."""
    with demo_ctx.db.write() as s:
        upsert_asset(s, "closed-01", address="127.0.0.1", port=1)  # nothing listens on port 1: refused at once
    alice = {"KEYTURN_OPERATOR": "alice"}
    prefix = "keyturn: error: "
    import_error = keyturn_cli("import", str(BAD_FILE), env=alice).stderr.strip()
    trust_error = keyturn_cli("asset", "trust", "closed-01", env=alice).stderr.strip().splitlines()[-1]
    assert import_error.startswith(prefix) and trust_error.startswith(prefix)

    async def flow() -> None:
        app = KeyturnApp(demo_ctx, clock=lambda: NOW)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i", "f")
            await until(pilot, lambda: app.screen.query("#prompt-input"), "the path prompt")
            app.screen.query_one("#prompt-input", Input).value = str(BAD_FILE)
            await pilot.press("enter")
            await until(pilot, lambda: import_error.removeprefix(prefix) in toasts(app), f"{import_error!r} in {toasts(app)}")

            await pilot.press("slash", *"closed", "enter")
            await until(pilot, lambda: app.screen.selected_asset() == "closed-01", "the asset")
            await pilot.press("k")
            await until(pilot, lambda: trust_error.removeprefix(prefix) in toasts(app), f"{trust_error!r} in {toasts(app)}")

    asyncio.run(flow())


# -- 5. focus after a failed save ---------------------------------------------------------------------------
def _shown(form: Widget, widget: Widget) -> bool:
    body = form.query_one("#form-body")
    try:
        region = form.find_widget(widget).region
    except Exception:  # not in the screen's map: scrolled out of view
        return False
    return body.region.contains_region(region)


@sync
async def test_failed_save_focuses_the_field_in_error_in_view(demo_ctx: Context) -> None:
    """Empty name after scrolling down: Name gets the focus, in view; a bad cron line: the cron field, not the Select."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t", "n")
        await until(pilot, lambda: app.screen.focused is not None and app.screen.focused.id == "name", "the form")
        form = app.screen
        await pilot.press("tab", *"root")
        form.query_one("#description", Input).focus()
        await until(pilot, lambda: form.focused.id == "description", "the description field")
        await pilot.pause()
        assert not _shown(form, form.query_one("#name", Input))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: form.focused.id == "name", "the focus on Name")
        await until(pilot, lambda: _shown(form, form.query_one("#name", Input)), "Name in view")

        await pilot.press(*"nightly")
        form.query_one("#assets", SelectionList).select("web-01")
        form.query_one("#periodic", Select).value = "cron"
        form.query_one("#cron", Input).value = "99 3 * * *"
        await pilot.pause()
        form.query_one("#description", Input).focus()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: form.focused.id == "cron", f"the focus on the cron line, not {form.focused}")
        await until(pilot, lambda: _shown(form, form.query_one("#cron", Input)), "the cron line in view")
        await pilot.press("end", "backspace")  # typing edits the line; no dropdown opens
        assert form.query_one("#cron", Input).value == "99 3 * * "


# -- 6. the enrol dialogs keep themselves open on bad input ----------------------------------------------
@sync
async def test_bad_email_keeps_the_enrol_dialog_open_with_its_error(ctx: Context) -> None:
    """A bad email: the prompt stays with the field's error and the next keys go into it, not to mode keys."""
    from core import operators as ops
    from tui.modals.enrol import EnrolModal
    from tui.modals.prompt import PromptModal

    ctx.settings.reconcile_on_start = False
    app = KeyturnApp(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u", "n")
        await until(pilot, lambda: isinstance(app.screen, PromptModal), "the name prompt")
        await pilot.press(*"carol", "enter")
        await until(pilot, lambda: isinstance(app.screen, PromptModal) and "Email" in app.screen.title_text, "email")
        await pilot.press(*"carol-at-example", "enter")
        await settled(pilot)  # core checks the email in the prompt's write (a thread worker)
        prompt = app.screen
        assert isinstance(prompt, PromptModal)
        assert "email 'carol-at-example': expected an address like name@example.org" in str(
            prompt.query_one("#prompt-error").render())
        await pilot.press("o")  # a mode key: typed into the field, no mode switch
        assert app.screen is prompt and prompt.query_one("#prompt-input", Input).value == "carol-at-exampleo"
        prompt.query_one("#prompt-input", Input).value = ""
        await pilot.press(*"carol@example.org", "enter")
        await until(pilot, lambda: isinstance(app.screen, EnrolModal), "the QR code")
    assert [o.name for o in ops.list_operators(ctx)] == ["carol"]


# -- 7. a new cron task waits for its first cron time -------------------------------------------------------
@sync
async def test_new_cron_task_from_the_form_waits_for_its_cron_time(demo_ctx: Context) -> None:
    """The form says next runs 03:00; the saved task is due then (not at creation), so the scheduler waits."""
    from core import tasks
    from core.scheduler import due_tasks
    from storage.tables import utcnow

    from tests.tui.test_flows import unlocked

    # Creating a task needs a fresh TOTP step-up (issue 11): alice gave her code a moment ago.
    app = KeyturnApp(demo_ctx, clock=lambda: NOW, mfa_session=unlocked(demo_ctx))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t", "n")
        await until(pilot, lambda: app.screen.focused is not None and app.screen.focused.id == "name", "the form")
        form = app.screen
        await pilot.press(*"nightly", "tab", *"app")
        form.query_one("#assets", SelectionList).select("web-01")
        form.query_one("#periodic", Select).value = "cron"
        form.query_one("#cron", Input).value = "0 3 * * *"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the form to save")
    saved = tasks.get_task(demo_ctx, "nightly")
    now = utcnow()
    assert saved.next_run_at is not None and (saved.next_run_at.hour, saved.next_run_at.minute) == (3, 0)
    assert now < saved.next_run_at <= now + timedelta(days=1)
    assert "nightly" not in [t.name for t in due_tasks(demo_ctx, now)]


# -- 4. retry targets each account once, from its newest record ----------------------------------------------
def _failed_records(ctx: Context, count: int) -> list[int]:
    """count failed records of web-01/app in count runs of web-passwords (as three failed nights leave them)."""
    from sqlmodel import select

    from storage.tables import Account, Asset, ChangeRecord, Execution, ChangeSecretTask

    ids = []
    with ctx.db.write() as s:
        # The host refuses at once: the retry fails fast without touching anything.
        asset = s.exec(select(Asset).where(Asset.name == "web-01")).one()
        asset.address, asset.port = "127.0.0.1", 1
        account = s.exec(select(Account).where(Account.asset_id == asset.id, Account.username == "app")).one()
        task = s.exec(select(ChangeSecretTask).where(ChangeSecretTask.name == "web-passwords")).one()
        for i in range(count):
            ex = Execution(task_id=task.id, task_name=task.name, trigger="schedule", status="failed", operator="alice",
                           started_at=NOW + timedelta(hours=i), finished_at=NOW + timedelta(hours=i, seconds=5))
            s.add(ex)
            s.flush()
            rec = ChangeRecord(execution_id=ex.id, task_id=task.id, task_name=task.name, account_id=account.id,
                               asset_name="web-01", username="app", status="failed", error=f"night {i}: refused",
                               created_at=ex.started_at, started_at=ex.started_at, finished_at=ex.finished_at)
            s.add(rec)
            s.flush()
            ids.append(rec.id)
    return ids


@sync
async def test_retry_all_failed_targets_each_account_once_with_its_newest_record(demo_ctx: Context) -> None:
    """Three failed nights of web-01/app: Y retries it once, as a retry of the newest record."""
    from storage import executions as rec
    from tui.modals.confirm import ConfirmModal

    from tests.tui.test_flows import unlocked

    ids = _failed_records(demo_ctx, 3)
    # A retry pushes new secrets: a TOTP step-up (core.engine); alice gave her code a moment ago.
    app = KeyturnApp(demo_ctx, clock=lambda: NOW, mfa_session=unlocked(demo_ctx))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#filter-text", Input).value = "night"
        await pilot.press("slash", "enter")
        await until(pilot, lambda: app.screen.total == 3, "the three failed records")
        await pilot.press("Y")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the retry question")
        assert app.screen.title_text.startswith("Retry 1 ")
        await pilot.press("y")
        await until(pilot, lambda: app.runs and all(r.finished for r in app.runs.values()), "the retry to finish")
        run = list(app.runs.values())[-1]
    records = rec.list_records(demo_ctx.db, execution_id=run.execution_id)
    assert [(r.asset_name, r.username, r.retry_of) for r in records] == [("web-01", "app", ids[-1])]
