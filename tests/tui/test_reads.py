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

from tests.tui.helpers import settled, sync, until
from tests.tui.test_defects import SIZE
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
        await settled(pilot)
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
        await settled(pilot)
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
        await settled(pilot)
        line = str(app.screen.query_one("#form-preview", Label).render())
        assert line.startswith("targets: ") and "choose" not in line, line
        assert len(calls) >= 4, calls
        assert all(t is not threading.main_thread() for t in calls), [t.name for t in calls]


@pytest.mark.parametrize(("key", "read", "modal"), [
    ("e", "get_asset", "AssetFormModal"),
    ("d", "asset_to_remove", "ConfirmModal"),
    ("c", "list_accounts", "AccountFormModal"),
    ("x", "account_to_remove", "ConfirmModal"),
])
@sync
async def test_inventory_actions_read_off_the_ui_thread(demo_app: Callable[[], KeyturnApp],
                                                        monkeypatch: pytest.MonkeyPatch, key: str, read: str,
                                                        modal: str) -> None:
    """Editing or removing an asset or an account reads what the dialog shows in a worker thread: the asset
    form's asset, what a removal deletes, the account afresh (the account form's set-up)."""
    calls: list[threading.Thread] = []
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await app.reads.settled()
        await until(pilot, lambda: app.screen.query_one("#accounts-table", DataTable).row_count > 0,
                    "the highlighted asset's accounts")
        spy(monkeypatch, f"core.services.inventory.{read}", calls)
        await pilot.press(key)
        await until(pilot, lambda: type(app.screen).__name__ == modal, f"the {modal}")
        assert calls and all(t is not threading.main_thread() for t in calls), [t.name for t in calls]


@sync
async def test_tasks_page_through_a_long_list(demo_app: Callable[[], KeyturnApp],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks holds one page of rows (the UI thread measures and draws every row a table holds); [ ] page, and
    the footer offers them only when there is another page."""
    import tui.screens.tasks as tasks_screen

    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await app.reads.settled()
        assert "left_square_bracket" not in app.screen.active_bindings  # the demo's 4 tasks fit one page
        monkeypatch.setattr(tasks_screen, "PAGE", 3)
        app.screen.reload()  # type: ignore[attr-defined]
        await settled(pilot)
        table = app.screen.query_one("#tasks-table", DataTable)
        count = app.screen.query_one("#tasks-count", Label)
        first = [str(k.value) for k in table.rows]
        assert len(first) == 3 and "Tasks 1-3 of 4" in str(count.render())
        assert "left_square_bracket" in app.screen.active_bindings
        await pilot.press("right_square_bracket")
        await settled(pilot)
        second = [str(k.value) for k in table.rows]
        assert len(second) == 1 and second[0] not in first and "Tasks 4-4 of 4" in str(count.render())
        await pilot.press("left_square_bracket")
        await settled(pilot)
        assert [str(k.value) for k in table.rows] == first


@sync
async def test_a_shown_table_is_drawn_again_when_its_styles_change(demo_app: Callable[[], KeyturnApp]) -> None:
    """Unchanged rows keep what is drawn across mode switches, but not across a change of the table's styles
    (a theme): the cells are drawn in the new colours."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await settled(pilot)
        table = app.screen.query_one("#records-table", DataTable)
        before = [s.style for s in table.render_line(2)]
        await pilot.press("t", "s")  # away and back: same rows, same styles
        await settled(pilot)
        assert [s.style for s in table.render_line(2)] == before
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        await pilot.pause()
        assert [s.style for s in table.render_line(2)] != before


@sync
async def test_the_cursor_turns_the_page_at_either_end(demo_app: Callable[[], KeyturnApp],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Down from a page's last row shows the next page with the cursor on its first row; up from the first row
    goes back with the cursor on the last; at the list's ends nothing happens."""
    import tui.screens.tasks as tasks_screen

    monkeypatch.setattr(tasks_screen, "PAGE", 3)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await settled(pilot)
        table = app.screen.query_one("#tasks-table", DataTable)
        first = [str(k.value) for k in table.rows]
        assert len(first) == 3 and table.cursor_row == 0
        await pilot.press("up")  # the first page's first row: no earlier page
        await app.reads.settled()
        assert [str(k.value) for k in table.rows] == first and app.screen.page_offset == 0  # type: ignore[attr-defined]
        await pilot.press("down", "down", "down")
        await settled(pilot)
        assert len(table.rows) == 1 and table.cursor_row == 0 and app.screen.page_offset == 3  # type: ignore[attr-defined]
        await pilot.press("down")  # the last task: nothing after it
        await app.reads.settled()
        assert app.screen.page_offset == 3  # type: ignore[attr-defined]
        await pilot.press("up")
        await settled(pilot)
        assert [str(k.value) for k in table.rows] == first and table.cursor_row == 2
