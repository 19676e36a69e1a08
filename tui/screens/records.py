"""Records mode: one row per account change, filtered in SQL and paged; reveal, retry and reconcile."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label, Select

from core.listings import count_records, list_records, retryable_records
from core.services.views import RECORD_STATUSES, task_names
from core.types import RecordInfo
from tui.modals.confirm import ConfirmModal
from tui.screens.base import ModeScreen, page_bindings
from tui.widgets.format import plural, clip, status_text, when, show_text
from tui.widgets.table import PlainTable

PAGE = 100
SEARCH_DELAY = 0.3


class RecordsScreen(ModeScreen):
    """Change records newest first; filters by status, task and text are applied by the database."""

    MODE = "records"
    # The table has the focus from the start (focusing the first field, then the table, restyled both).
    AUTO_FOCUS = "#records-table"
    PAGED_TABLE = "records-table"
    BINDINGS = [
        Binding("v", "reveal", "Reveal"),
        Binding("y", "retry", "Retry"),
        Binding("Y", "retry_all", "Retry all failed"),
        Binding("slash", "focus_search", "Search"),
        *page_bindings(),
        Binding("g", "reconcile", "Reconcile", show=False),
        Binding("f5", "reload", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page_offset = 0
        self.total = 0
        self._search_timer: Timer | None = None
        self._task_options: list[str] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="records-filters"):
            yield Select([("failed + unverified", "attention"), ("drift (heartbeat not ok)", "drift"),
                          *((s, s) for s in RECORD_STATUSES)],
                         prompt="any status", id="filter-status")
            yield Select([], prompt="any task", id="filter-task")
            yield Input(placeholder="search asset, account, error", id="filter-text")
        yield Label("", markup=False, id="records-count", classes="section-title")
        table: DataTable = PlainTable(id="records-table", cursor_type="row", zebra_stripes=True)
        for key in ("id", "when", "asset", "account", "task", "exec", "status", "error"):
            table.add_column(key, key=key)
        yield table

    # -- filters -----------------------------------------------------------------------------------
    @property
    def filters(self) -> dict[str, str | None]:
        """The current filters as list_records keywords."""
        status = self.query_one("#filter-status", Select).value
        task = self.query_one("#filter-task", Select).value
        return {
            "status": None if status is Select.NULL else str(status),
            "task": None if task is Select.NULL else str(task),
            "search": self.query_one("#filter-text", Input).value.strip(),
        }

    def on_select_changed(self, event: Select.Changed) -> None:
        """A new filter starts at the first page."""
        self.page_offset = 0
        self.reload()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Search as the user types, once they pause."""
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DELAY, self._search_now)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter searches at once and goes to the table."""
        self._search_now()
        self.query_one("#records-table", DataTable).focus()

    def _search_now(self) -> None:
        self.page_offset = 0
        self.reload()

    def _show_task_options(self, names: list[str]) -> None:
        if names != self._task_options:
            self._task_options = names
            select = self.query_one("#filter-task", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options((n, n) for n in names)
                if current in names:
                    select.value = current

    # -- loading -----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Load the current page with the current filters (in a thread worker; the table fills when it arrives)."""
        ctx, f, offset = self.ctx, self.filters, self.page_offset

        def page() -> tuple[int, int, list[RecordInfo]]:
            total = count_records(ctx, **f)  # type: ignore[arg-type]
            start = max(0, min(offset, (total - 1) // PAGE * PAGE if total else 0))
            return total, start, list_records(ctx, **f, offset=start, limit=PAGE)  # type: ignore[arg-type]

        self.read_in_thread("records", page, self._show_page, name="Loading records")
        self.read_in_thread("records-tasks", lambda: task_names(ctx), self._show_task_options,
                            name="Loading task names")

    def _show_page(self, data: tuple[int, int, list[RecordInfo]]) -> None:
        self.total, self.page_offset, rows = data
        now = self.now()
        table = self.query_one("#records-table", PlainTable)
        cursor = table.cursor_row
        table.show_rows((str(r.id), (str(r.id), when(r.created_at, now), r.asset_name, r.username, r.task_name,
                                     str(r.execution_id), status_text(r.status), clip(r.error, 40))) for r in rows)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self.place_cursor(table)
        show_text(self.query_one("#records-count", Label),
            f"Records {self.page_offset + 1 if rows else 0}-{self.page_offset + len(rows)} of {self.total}  ([ ] page, / search)")

    def action_reload(self) -> None:
        """Load again now (after a retry finished)."""
        self.reload()

    def action_page(self, step: int) -> None:
        """Previous or next page."""
        self.page_offset = max(0, self.page_offset + step * PAGE)
        self.reload()

    def action_focus_search(self) -> None:
        """Jump to the text filter."""
        self.query_one("#filter-text", Input).focus()

    def _selected_id(self) -> int | None:
        table = self.query_one("#records-table", DataTable)
        if not table.row_count:
            self.notify("No record selected", severity="warning")
            return None
        return int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    # -- actions -----------------------------------------------------------------------------------
    def action_reveal(self) -> None:
        """Reveal the old and new secret of the highlighted record (after a TOTP check)."""
        record_id = self._selected_id()
        if record_id is not None:
            self.kt.reveal_record(record_id, "both")

    def action_retry(self) -> None:
        """Retry the highlighted record (failed or unverified only)."""
        record_id = self._selected_id()
        if record_id is None:
            return
        table = self.query_one("#records-table", DataTable)
        status = str(table.get_cell(str(record_id), "status"))
        if status not in ("failed", "unverified"):
            self.notify(f"Record {record_id} is {status}; only failed or unverified records are retried",
                        severity="warning")
            return
        self.kt.start_retry([record_id], f"retry record {record_id}")

    def action_retry_all(self) -> None:
        """Retry every failed and unverified record the filters match (one run per task), after a confirmation."""
        ctx, f = self.ctx, self.filters
        self.read_in_thread("retry-all", lambda: retryable_records(ctx, **f), self._ask_retry_all,  # type: ignore[arg-type]
                            name="Finding records to retry")

    def _ask_retry_all(self, by_task: dict[str, list[int]]) -> None:
        count = sum(len(ids) for ids in by_task.values())
        if not count:
            self.notify("No failed or unverified records (not yet retried) match the filters", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                for task_name, ids in by_task.items():
                    self.kt.start_retry(ids, f"retry {len(ids)} of {task_name}")

        self.app.push_screen(ConfirmModal(
            f"Retry {plural(count, 'failed/unverified record')} of {plural(len(by_task), 'task')}?",
            "Failed ones get a new secret, unverified ones re-push their candidate; old secrets stay in the vault.",
            yes="Retry"), done)

    def action_reconcile(self) -> None:
        """Settle pending, pushing and unverified records by probing the hosts."""
        self.kt.start_reconcile()
