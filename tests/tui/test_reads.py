"""Issue 12, reads off the UI thread: every screen's reload (and the task form's set-up and preview) runs its
core read in a thread worker, and the data reaches the screen as a message; a stale result is dropped.

The core read functions are wrapped, not replaced: the wrapper notes the thread it ran on and calls the real
function on the demo database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from textual.widgets import DataTable, Label

from tests.tui.test_defects import SIZE, sync, until
from tui.app import KeyturnApp


def spy(monkeypatch: pytest.MonkeyPatch, target: str, calls: list[threading.Thread],
        before: Callable[[], None] | None = None) -> None:
    """Wrap module.function so each call notes its thread (and runs `before` first)."""
    module_name, name = target.rsplit(".", 1)
    module = __import__(module_name, fromlist=[name])
    real = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(threading.current_thread())
        if before is not None:
            before()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


# mode key -> (the read its reload calls, where the screen finds it), the table it fills
READS = {
    "o": ("tui.screens.overview.attention_accounts", "attention-table"),
    "t": ("tui.screens.tasks.task_rows", "tasks-table"),
    "h": ("tui.screens.history.list_executions", "executions-table"),
    "s": ("tui.screens.records.list_records", "records-table"),
    "i": ("core.services.inventory.list_assets", "assets-table"),
    "u": ("tui.screens.audit.list_events", "audit-table"),
}


@pytest.mark.parametrize("key", list(READS))
@sync
async def test_reload_reads_in_a_worker_thread(demo_app: Callable[[], KeyturnApp], monkeypatch: pytest.MonkeyPatch,
                                               key: str) -> None:
    """Showing a mode (and F5 or coming back to it) queries the database on a worker thread, never the UI's."""
    target, table_id = READS[key]
    calls: list[threading.Thread] = []
    spy(monkeypatch, target, calls)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await app.reads.settled()
        await pilot.pause()
        assert app.screen.query_one(f"#{table_id}", DataTable).row_count > 0
        # Away and back: the resume reloads, again off the UI thread.
        await pilot.press("t" if key != "t" else "h")
        await pilot.press(key)
        await app.reads.settled()
        assert len(calls) >= 2, calls
        assert all(t is not threading.main_thread() for t in calls), [t.name for t in calls]


@sync
async def test_stale_result_is_dropped(demo_app: Callable[[], KeyturnApp], monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow read superseded by a newer one (the next filter) never paints over the newer result."""
    release = threading.Event()
    calls: list[threading.Thread] = []

    def hold_first() -> None:
        if len(calls) == 1:
            release.wait(30)

    spy(monkeypatch, "tui.screens.records.list_records", calls, before=hold_first)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")  # the first read of Records blocks in its worker thread
        await until(pilot, lambda: len(calls) == 1, "the first records read")
        screen = app.screen
        screen.query_one("#filter-text").value = "no-such-asset-anywhere"
        await until(pilot, lambda: len(calls) == 2, "the search's read")
        await until(pilot, lambda: "of 0" in str(screen.query_one("#records-count", Label).render()),
                    "the search result")
        release.set()  # now the stale first page arrives
        await app.reads.settled()
        await pilot.pause()
        assert screen.query_one("#records-table", DataTable).row_count == 0
        assert "of 0" in str(screen.query_one("#records-count", Label).render())


@sync
async def test_task_form_setup_and_preview_off_the_ui_thread(demo_app: Callable[[], KeyturnApp],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The task form opens without reading nodes, operators, assets or the target preview on the UI thread."""
    calls: list[threading.Thread] = []
    for target in ("tui.modals.task_form.list_nodes", "tui.modals.task_form.operator_names",
                   "tui.modals.task_form.asset_choices", "tui.modals.task_form.visible_preview"):
        spy(monkeypatch, target, calls)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await app.reads.settled()
        await pilot.press("e")  # the highlighted demo task: its nodes and assets give a preview
        await until(pilot, lambda: app.screen.query("#form-preview"), "the task form")
        await app.reads.settled()
        await pilot.pause()
        line = str(app.screen.query_one("#form-preview", Label).render())
        assert line.startswith("targets: ") and "choose" not in line, line
        assert len(calls) >= 4, calls
        assert all(t is not threading.main_thread() for t in calls), [t.name for t in calls]
