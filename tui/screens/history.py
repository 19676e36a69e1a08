"""Execution history mode: every run newest first (paged), and the live panel of runs started here."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from core.listings import count_executions, list_executions
from core.types import ExecutionInfo
from tui.modals.confirm import ConfirmModal
from tui.screens.base import ModeScreen, page_bindings
from tui.screens.execution import ExecutionScreen
from tui.widgets.format import duration, status_text, when, show_text
from tui.widgets.run_panel import RunPanel
from tui.widgets.table import PlainTable

PAGE = 100  # about three screens at 120x40: the UI thread measures and draws every row a table holds


class HistoryScreen(ModeScreen):
    """Executions (Enter opens one) above the live runs panel (x cancels the highlighted run)."""

    MODE = "history"
    PAGED_TABLE = "executions-table"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("x", "cancel_run", "Cancel run"),
        *page_bindings(),
        Binding("f5", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page_offset = 0
        self.total = 0

    def compose_body(self) -> ComposeResult:
        yield Label("", markup=False, id="history-count", classes="section-title")
        table: DataTable = PlainTable(id="executions-table", cursor_type="row", zebra_stripes=True)
        for key in ("id", "task", "trigger", "started", "took", "status", "ok", "failed", "unver."):
            table.add_column(key, key=key)
        yield table
        yield RunPanel(id="run-panel")

    def reload(self) -> None:
        """Load the current page of executions (in a thread worker; the table fills when it arrives)."""
        ctx, offset = self.ctx, self.page_offset

        def page() -> tuple[int, int, list[ExecutionInfo]]:
            total = count_executions(ctx)
            start = max(0, min(offset, (total - 1) // PAGE * PAGE if total else 0))
            return total, start, list_executions(ctx, offset=start, limit=PAGE)

        self.read_in_thread("history", page, self._show_page, name="Loading executions")
        self.query_one(RunPanel).refresh_runs()

    def _show_page(self, data: tuple[int, int, list[ExecutionInfo]]) -> None:
        self.total, self.page_offset, rows = data
        total = self.total
        now = self.now()
        table = self.query_one("#executions-table", PlainTable)
        cursor = table.cursor_row
        cells = []
        for e in rows:
            took = (e.finished_at - e.started_at).total_seconds() if e.finished_at else None
            cells.append((str(e.id), (str(e.id), e.task_name, e.trigger, when(e.started_at, now), duration(took),
                                      status_text(e.status), str(e.succeeded), str(e.failed), str(e.unverified))))
        table.show_rows(cells)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.place_cursor(table)
        last = self.page_offset + len(rows)
        show_text(self.query_one("#history-count", Label),
            f"Executions {self.page_offset + 1 if rows else 0}-{last} of {total}  ([ ] page)")

    def action_reload(self) -> None:
        """Load again now."""
        self.reload()

    def action_page(self, step: int) -> None:
        """Previous or next page."""
        self.page_offset = max(0, self.page_offset + step * PAGE)
        self.reload()

    def action_open(self) -> None:
        """Open the highlighted execution (or the highlighted run's execution)."""
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id == "runs-table":
            run = self.query_one(RunPanel).selected_run
            if run is None or run.execution_id is None:
                return
            self.app.push_screen(ExecutionScreen(run.execution_id))
            return
        table = self.query_one("#executions-table", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.push_screen(ExecutionScreen(int(key)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens it."""
        event.stop()
        self.action_open()

    def action_cancel_run(self) -> None:
        """Cancel the highlighted live run after a confirmation."""
        run = self.query_one(RunPanel).selected_run
        if run is None or run.finished:
            self.notify("No running run selected", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.kt.cancel_run(run.key)

        self.app.push_screen(ConfirmModal(
            f"Cancel {run.title}?",
            "Accounts already being changed finish and are verified; the rest are not touched.",
            yes="Cancel run", no="Keep running", danger=True), done)
