"""Live rotation runs: the state the App keeps per run, and the panel that shows their logs and progress."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, RichLog

from core.events import AccountSettled, AssetFailed, Event, ExecutionFinished, ExecutionStarted
from tui.widgets.format import STATUS_STYLES, status_text
from tui.widgets.table import PlainTable

LOG_LINES = 5000
FINAL = {"success", "partial", "failed", "cancelled", "interrupted", "error"}


@dataclass(eq=False)
class RunState:
    """One rotation the app started (a task run, a retry or a reconcile), kept while the user switches modes."""

    key: int
    title: str
    kind: str  # run | retry | reconcile
    started_at: datetime
    cancel: threading.Event = field(default_factory=threading.Event)
    execution_id: int | None = None
    status: str = "starting"
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    unverified: int = 0
    lines: deque[Text] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    worker: object | None = None  # the textual Worker running it

    @property
    def done(self) -> int:
        """Accounts settled so far."""
        return self.succeeded + self.failed + self.unverified

    @property
    def finished(self) -> bool:
        """Whether the run has ended (any outcome)."""
        return self.status in FINAL

    def apply(self, event: Event) -> Text:
        """Fold an engine event into the counters; return its coloured log line."""
        style = ""
        if isinstance(event, ExecutionStarted):
            self.execution_id = event.execution_id
            self.total = event.total
            self.status = "running"
        elif isinstance(event, AccountSettled):
            if event.status == "success":
                self.succeeded += 1
            elif event.status == "failed":
                self.failed += 1
            else:
                self.unverified += 1
            style = STATUS_STYLES.get(event.status, "")
        elif isinstance(event, AssetFailed):
            style = "red"
        elif isinstance(event, ExecutionFinished):
            self.status = "cancelled" if self.cancel.is_set() and event.status != "success" else event.status
            self.total, self.succeeded, self.failed, self.unverified = (
                event.total, event.succeeded, event.failed, event.unverified)
            style = "bold " + STATUS_STYLES.get(event.status, "")
        line = Text(event.at.strftime("%H:%M:%S "), style="dim")
        line.append(event.text(), style=style)
        self.lines.append(line)
        return line

    def note(self, message: str, style: str = "") -> Text:
        """Add a line that does not come from the engine (start, cancel request, error)."""
        line = Text(message, style=style)
        self.lines.append(line)
        return line


class RunUpdated(Message):
    """A run changed; line is the new log line, if any. Posted by the App to its run panels."""

    def __init__(self, run: RunState, line: Text | None) -> None:
        super().__init__()
        self.run = run
        self.line = line


class RunPanel(Vertical):
    """The runs this app started, a progress bar and the live log of the highlighted run."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.selected: int | None = None

    def compose(self) -> ComposeResult:
        table: DataTable = PlainTable(id="runs-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("run", "task", "status", "done", "ok", "failed", "unverified")
        yield table
        yield ProgressBar(id="run-progress", show_eta=False)
        yield RichLog(id="run-log", max_lines=LOG_LINES, wrap=True, markup=False, highlight=False)

    def on_mount(self) -> None:
        """Follow the App's runs while mounted, starting from what happened before."""
        self.app.run_signal.subscribe(self, self._on_run)  # type: ignore[attr-defined]
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Rebuild from the App's registry (after the user comes back to this mode)."""
        runs: dict[int, RunState] = self.app.runs  # type: ignore[attr-defined]
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        for run in runs.values():
            table.add_row(*self._cells(run), key=str(run.key))
        self.display = bool(runs)
        if runs:
            want = self.selected if self.selected in runs else list(runs)[-1]
            self.show(want)

    def _cells(self, run: RunState) -> tuple:
        return (f"#{run.execution_id or '-'}", run.title, status_text(run.status), f"{run.done}/{run.total}" if run.total else str(run.done),
                Text(str(run.succeeded), "green"), Text(str(run.failed), "red"),
                Text(str(run.unverified), "yellow"))

    def show(self, key: int) -> None:
        """Show the log and progress of one run, with the table's cursor on it."""
        if not self._show_log(key):
            return
        table = self.query_one("#runs-table", DataTable)
        index = table.get_row_index(str(key))
        if table.cursor_row != index:
            table.move_cursor(row=index)

    def _show_log(self, key: int) -> bool:
        runs: dict[int, RunState] = self.app.runs  # type: ignore[attr-defined]
        run = runs.get(key)
        if run is None:
            return False
        self.selected = key
        log = self.query_one("#run-log", RichLog)
        log.clear()
        for line in run.lines:
            log.write(line)
        self._progress(run)
        return True

    def _progress(self, run: RunState) -> None:
        bar = self.query_one("#run-progress", ProgressBar)
        if run.finished:
            # An unknown total animates ("--%") on every frame: a finished run is whole, even with no accounts.
            bar.update(total=max(run.total, 1), progress=max(run.total, 1))
        else:
            bar.update(total=run.total or None, progress=run.done)

    def _on_run(self, update: RunUpdated) -> None:
        run = update.run
        table = self.query_one("#runs-table", DataTable)
        key = str(run.key)
        if key not in table.rows:
            table.add_row(*self._cells(run), key=key)
            self.display = True
            self.show(run.key)
            return
        for column, value in zip(table.columns, self._cells(run)):
            table.update_cell(key, column, value)
        if run.key == self.selected:
            if update.line is not None:
                self.query_one("#run-log", RichLog).write(update.line)
            self._progress(run)

    def on_resize(self) -> None:
        """RichLog wraps a line when it is written: write the run's lines again at the new width."""
        if self.selected is not None:
            self._show_log(self.selected)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Highlighting a run shows its log (and never moves the cursor back: the two would chase each other)."""
        if event.data_table.id != "runs-table":
            return
        event.stop()
        # A highlight posted before a later cursor move (clear, add_row, show) is stale: acting on it would
        # move the cursor back, post another highlight, and so on forever.
        if event.row_key.value is None or event.cursor_row != event.data_table.cursor_row:
            return
        key = int(event.row_key.value)
        if key != self.selected:
            self._show_log(key)

    @property
    def selected_run(self) -> RunState | None:
        """The run whose log is shown."""
        return self.app.runs.get(self.selected) if self.selected is not None else None  # type: ignore[attr-defined]
