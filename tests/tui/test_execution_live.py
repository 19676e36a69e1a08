"""History's execution view follows a run that another process writes (a keyturn worker, another machine)."""

from __future__ import annotations

from sqlmodel import select
from textual.widgets import DataTable, Static

from storage import executions as rec
from storage.tables import ChangeRecord
from tests.tui.demo_data import NOW
from tests.tui.helpers import sync, until
from tui.app import KeyturnApp
from tui.screens.execution import ExecutionScreen


@sync
async def test_a_running_execution_updates_live_and_stops_polling_when_finished(demo_ctx) -> None:  # noqa: ANN001
    """Rows written to the database by someone else appear in the open view; once finished, polling stops."""
    db = demo_ctx.db
    ex_id = rec.create_execution(db, task_id=None, task_name="elsewhere", trigger="cli", operator="bob",
                                 snapshot={}, pid=1, hostname="jump-b")
    with db.write() as s:
        row = ChangeRecord(execution_id=ex_id, task_name="elsewhere", asset_name="web-01", username="app",
                           status="pushing")
        s.add(row)
        s.flush()
        record_id = row.id
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=(100, 32)) as pilot:
        await app.push_screen(ExecutionScreen(ex_id))
        await until(pilot, lambda: isinstance(app.screen, ExecutionScreen), "the execution view")
        screen = app.screen
        await app.reads.settled()  # the view reads the execution in a thread worker
        table = screen.query_one("#execution-records", DataTable)
        assert "pushing" in str(table.get_row(str(record_id))[2])
        assert screen._poll is not None

        # Another process settles the account, logs it and finishes the run.
        with db.write() as s:
            s.exec(select(ChangeRecord).where(ChangeRecord.id == record_id)).one().status = "success"
        rec.append_log(db, ex_id, ["web-01: app: success"])
        rec.recount_execution(db, ex_id)
        rec.finish_execution(db, ex_id)
        await until(pilot, lambda: "success" in str(table.get_row(str(record_id))[2]), "the settled record")
        await until(pilot, lambda: screen._poll is None, "polling to stop")
        head = str(screen.query_one("#execution-head", Static).render())
        assert "1 ok" in head and "running" not in head
