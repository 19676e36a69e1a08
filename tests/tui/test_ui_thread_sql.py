"""The UI thread never waits on the database (issue 12): every statement the app sends while a person moves
through it (modes, forms, the reveal and TOTP dialogs, the operator dialog, previews) runs in a worker thread.

Every SQL statement of the app's database engine is seen by a SQLAlchemy event hook that notes the thread it
runs in; the test drives the app by keys only and fails on any statement sent from the UI (main) thread."""

from __future__ import annotations

import threading

from sqlalchemy import event

from core.context import Context
from tests.tui.demo_data import NOW
from tests.tui.helpers import settled, sync, until
from tui.app import KeyturnApp

SIZE = (80, 24)


def _caller() -> str:
    """The app's own frame nearest to the statement (what sent it)."""
    import traceback

    for frame in reversed(traceback.extract_stack()):
        if "/tui/" in frame.filename and "/tests/" not in frame.filename:
            return f"{frame.filename.rsplit('/tui/', 1)[1]}:{frame.lineno} {frame.name}"
    return "?"


@sync
async def test_no_sql_runs_on_the_ui_thread(demo_ctx: Context) -> None:
    on_ui: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if threading.current_thread() is threading.main_thread():
            on_ui.append(" ".join(statement.split())[:60] + " <- " + _caller())

    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    event.listen(demo_ctx.db.engine, "before_cursor_execute", seen)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            await until(pilot, lambda: app.prebuilt, "the screens built ahead")
            steps = [
                ("t",), ("n",), ("escape",), ("p",), ("escape",), ("r",), ("escape",),  # task form, preview, run?
                ("i",), ("n",), ("escape",), ("a",), ("escape",), ("v",), *(("x",) * 3), ("enter",), ("escape",),
                ("s",), ("v",), *(("x",) * 3), ("enter",), ("escape",),  # records: reveal asks why, then a code
                ("u",), ("n",), ("escape",), ("e",), ("escape",),  # audit: new operator, enrol
                ("h",), ("o",),
            ]
            for keys in steps:
                await pilot.press(*keys)
                await settled(pilot)
                if len(app.screen_stack) > 1 and keys == ("escape",):
                    await pilot.press("escape")
                    await settled(pilot)
    finally:
        event.remove(demo_ctx.db.engine, "before_cursor_execute", seen)
    assert on_ui == [], f"{len(on_ui)} statements ran on the UI thread:\n" + "\n".join(dict.fromkeys(on_ui))


@sync
async def test_records_a_killed_run_left_open_are_settled_at_start(ctx: Context) -> None:
    """DESIGN.md step 4 in the app: a `pending` record of a run that died (its process is gone) is settled by
    the reconcile the app starts by itself; the check for open records runs in a thread worker."""
    from storage import executions as rec
    from storage.inventory import upsert_account, upsert_asset

    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="192.0.2.1")
        account, _ = upsert_account(ctx.db, s, asset, "app", secret="old-secret")
    execution_id = rec.create_execution(ctx.db, task_id=None, task_name="t1", trigger="manual", operator="alice",
                                        snapshot={}, pid=2**22 + 7, hostname=__import__("socket").gethostname())
    [record_id] = rec.add_pending_records(ctx.db, execution_id, [rec.PendingItem(account.id, "new-secret")])
    ctx.settings.reconcile_on_start = True
    app = KeyturnApp(ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any(r.title == "reconcile" for r in app.runs.values()), "the reconcile to start")
        await until(pilot, lambda: rec.get_record(ctx.db, record_id).status != "pending", "the record to be settled",
                    timeout=60)
    assert rec.get_record(ctx.db, record_id).status == "failed"  # never pushed: the host was not touched
