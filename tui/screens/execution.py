"""One execution: its counts, its full log, the accounts per asset with status and error, mail delivery.

A running execution is followed live, wherever it runs: this app, another keyturn process or machine sharing
the database, or keyturn workers (`task run --workers`).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Label, RichLog, Static

from core.listings import execution_detail
from tui.reads import ThreadedReads
from tui.widgets.footer import ModeFooter
from tui.widgets.format import STATUS_STYLES, clip, duration, status_text, when, show_text
from tui.widgets.table import PlainTable

LOG_LINES = 5000
LIVE_POLL_SECONDS = 1.0  # a running execution is read again this often (it may run in another process)


class ExecutionScreen(ThreadedReads):
    """Pushed over History; Esc goes back. v reveals the highlighted record's secrets (after TOTP)."""

    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("v", "reveal", "Reveal old/new"),
        Binding("l", "focus_log", "Log"),
    ]

    def __init__(self, execution_id: int) -> None:
        super().__init__()
        self.execution_id = execution_id

    def compose(self) -> ComposeResult:
        yield Static(id="execution-head")
        yield Label("", markup=False, id="execution-mail", classes="error-line")
        with Horizontal(id="execution-body"):
            table: DataTable = PlainTable(id="execution-records", cursor_type="row", zebra_stripes=True)
            for key in ("asset", "account", "status", "error"):
                table.add_column(key, key=key)
            yield table
            yield RichLog(id="execution-log", max_lines=LOG_LINES, wrap=True, markup=False, highlight=False)
        yield ModeFooter(compact=True)

    def on_mount(self) -> None:
        """Load the execution off the UI thread; while it runs (in this app, another process, on another machine
        or on keyturn workers) read it again every second, until it has finished."""
        self._poll: Timer | None = None
        self._started = False
        self._reload()

    def _reload(self) -> None:
        ctx, execution_id = self.app.ctx, self.execution_id  # type: ignore[attr-defined]
        self.read_in_thread("execution", lambda: execution_detail(ctx, execution_id),
                            lambda data: self._show(*data), name=f"Loading execution {execution_id}")

    def _show(self, info, records) -> None:  # type: ignore[no-untyped-def]
        """Draw the head, mail line, records and log; stop polling once the execution has finished."""
        if info.status != "running" and self._poll is not None:
            self._poll.stop()
            self._poll = None
        elif info.status == "running" and self._poll is None and not self._started:
            self._poll = self.set_interval(LIVE_POLL_SECONDS, self._reload)
        self._started = True
        if (info.status, info.succeeded, info.failed, info.unverified, len(records), len(info.log or "")) \
                == getattr(self, "_shown", None):
            return
        self._shown = (info.status, info.succeeded, info.failed, info.unverified, len(records), len(info.log or ""))
        app = self.app
        now = app.now()  # type: ignore[attr-defined]
        took = (info.finished_at - info.started_at).total_seconds() if info.finished_at else None
        head = Text()
        head.append(f"Execution {info.id}", style="bold").append(f" of {info.task_name}  ")
        head.append_text(status_text(info.status))
        head.append(f"\n{info.trigger} by {info.operator or '-'}, started {when(info.started_at, now)}, took {duration(took)}; ")
        head.append(f"{info.succeeded} ok", style="green").append(", ")
        head.append(f"{info.failed} failed", style="red").append(", ")
        head.append(f"{info.unverified} unverified", style="yellow").append(f" of {info.total}")
        show_text(self.query_one("#execution-head", Static), head)
        mail = self.query_one("#execution-mail", Label)
        mail.update(f"mail not delivered: {info.mail_error}" if info.mail_error else "")
        mail.display = bool(info.mail_error)
        table = self.query_one("#execution-records", DataTable)
        cursor = table.cursor_row
        table.clear()
        previous = None
        for r in records:
            # Group visually by asset: the asset name only on its first row.
            asset = r.asset_name if r.asset_name != previous else ""
            previous = r.asset_name
            table.add_row(asset, r.username, status_text(r.status), clip(r.error, 50), key=str(r.id))
        if records:
            table.move_cursor(row=min(max(cursor, 0), len(records) - 1))
        self._log_lines: list[Text] = []
        for line in (info.log or "(no log)").splitlines():
            style = ""
            for word, colour in STATUS_STYLES.items():
                if f": {word}" in line or f" {word};" in line:
                    style = colour
                    break
            self._log_lines.append(Text(line, style=style))
        self._write_log()

    def _write_log(self) -> None:
        log = self.query_one("#execution-log", RichLog)
        log.clear()
        for line in self._log_lines:
            log.write(line)

    def on_resize(self) -> None:
        """RichLog wraps a line when it is written: write the log again at the new width."""
        if hasattr(self, "_log_lines"):
            self._write_log()

    def action_back(self) -> None:
        """Back to the history."""
        self.app.pop_screen()

    def action_focus_log(self) -> None:
        """Move the focus to the log (to scroll it)."""
        self.query_one("#execution-log", RichLog).focus()

    def action_reveal(self) -> None:
        """Reveal the highlighted record's old and new secret."""
        table = self.query_one("#execution-records", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.reveal_record(int(key), "both")  # type: ignore[attr-defined]
