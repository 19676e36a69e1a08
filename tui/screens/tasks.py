"""Tasks mode: every change-secret task with its targets, schedule and last run; create, edit, run them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from core import tasks
from core.errors import KeyturnError
from core.targets import Preview, visible_preview
from core.services.views import TaskRow, task_rows
from core.stepup import StepUpRequired
from tui.modals.confirm import ConfirmModal
from tui.modals.preview import PreviewModal
from tui.modals.prompt import PromptModal
from tui.modals.task_form import TaskFormModal, task_name_validators
from tui.screens.base import ModeScreen
from tui.widgets.format import plural, ago, clip, status_text
from tui.widgets.table import PlainTable

TASK_LIMIT = 5000


class TasksScreen(ModeScreen):
    """The task list; n/e/c/d manage tasks, r runs one now, a toggles active, p previews targets."""

    MODE = "tasks"
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("e,enter", "edit", "Edit"),
        Binding("r", "run", "Run now"),
        Binding("W", "run_on_workers", "Run on workers", show=False),
        Binding("p", "preview", "Preview targets"),
        Binding("d", "delete", "Delete"),
        Binding("c", "copy", "Copy", show=False),
        Binding("a", "toggle_active", "Active on/off", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        yield Label("", markup=False, id="tasks-count", classes="section-title")
        table: DataTable = PlainTable(id="tasks-table", cursor_type="row", zebra_stripes=True)
        # 80 columns: strategy and secret type are in the form and the preview (e, p); active and the last
        # result in words are what a person scans for.
        for key in ("name", "active", "accounts", "targets", "schedule", "last run"):
            table.add_column(key, key=key)
        yield table

    def reload(self, select: str | None = None) -> None:
        """Load the task list (in a thread worker), keeping the cursor on the same task (or on `select`)."""
        ctx, keep = self.ctx, select or self.selected_name()
        self.read_in_thread("tasks", lambda: (keep, task_rows(ctx, limit=TASK_LIMIT)), self._show_rows,
                            name="Loading tasks")

    def _show_rows(self, data: tuple[str | None, list[TaskRow]]) -> None:
        keep, rows = data
        keep = self.selected_name() if keep is None else keep
        table = self.query_one("#tasks-table", DataTable)
        now = self.now()
        table.clear()
        for t in rows:
            targets = self._targets(t)
            last = Text("never", "dim")
            if t.last_status:
                last = status_text(t.last_status).append(f" {ago(t.last_started_at, now)}", style="")
            table.add_row(
                t.name, Text("yes", "green") if t.active else Text("no", "dim"), clip(",".join(t.usernames), 14),
                targets, t.schedule, last, key=t.name)
        self.query_one("#tasks-count", Label).update(plural(len(rows), "task"))
        if keep and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        self._rows = {t.name: t for t in rows}

    @staticmethod
    def _targets(t: TaskRow) -> str:
        parts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((t.assets, "asset"), (t.nodes, "node")) if n]
        return ", ".join(parts) or "-"

    def selected_name(self) -> str | None:
        """Name of the highlighted task."""
        table = self.query_one("#tasks-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _selected(self) -> TaskRow | None:
        name = self.selected_name()
        if name is None:
            self.notify("No task selected; press n to create one", severity="warning")
            return None
        return getattr(self, "_rows", {}).get(name)

    # -- actions -----------------------------------------------------------------------------------
    def action_new(self) -> None:
        """Open an empty task form."""
        if not self.kt.permit("edit"):
            return
        self.app.push_screen(TaskFormModal(self.ctx, None, now=self.now), self._saved)

    def action_edit(self) -> None:
        """Open the form on the highlighted task."""
        if not self.kt.permit("edit"):
            return
        row = self._selected()
        if row is None:
            return
        ctx, name = self.ctx, row.name
        self.read_in_thread("task", lambda: tasks.get_task(ctx, name),
                            lambda spec: self.app.push_screen(TaskFormModal(self.ctx, spec, now=self.now), self._saved),
                            name=f"Opening task {name}")

    def _saved(self, spec: object) -> None:
        if spec is not None:
            name = getattr(spec, "name", None)
            self.notify(f"Task {name} saved")
            self.reload(select=name)

    def action_copy(self) -> None:
        """Copy the highlighted task under a new name."""
        if not self.kt.permit("edit"):
            return
        row = self._selected()
        if row is None:
            return

        def done(new_name: str | None) -> None:
            if not new_name:
                return
            try:
                tasks.copy_task(self.ctx, row.name, new_name)
            except StepUpRequired as exc:
                self.kt.step_up(exc, lambda: done(new_name))
                return
            except (KeyturnError, ValueError) as exc:
                self.notify(str(exc), severity="error", title="Copy failed")
                return
            self.notify(f"Copied {row.name} to {new_name}")
            self.reload(select=new_name)

        taken = set(getattr(self, "_rows", {}))
        self.app.push_screen(PromptModal(
            f"Copy task {row.name} as", value=f"{row.name}-copy", validators=task_name_validators(),
            check=lambda v: f"a task named {v} already exists" if v in taken else None), done)

    def action_delete(self) -> None:
        """Delete the highlighted task after a confirmation (its executions and records stay)."""
        if not self.kt.permit("edit"):
            return
        row = self._selected()
        if row is None:
            return

        def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                tasks.delete_task(self.ctx, row.name)
            except KeyturnError as exc:
                self.notify(str(exc), severity="error", title="Delete failed")
                return
            self.notify(f"Deleted task {row.name}")
            self.reload()

        self.app.push_screen(ConfirmModal(
            f"Delete task {row.name}?", "Its executions and change records are kept.", yes="Delete", danger=True), done)

    def action_run(self) -> None:
        """Run the highlighted task now after a confirmation (the App runs it; the live log is in History)."""
        self._ask_run(on_workers=False)

    def action_run_on_workers(self) -> None:
        """Queue the highlighted task for `keyturn worker` processes after a confirmation; follow it here."""
        self._ask_run(on_workers=True)

    def _ask_run(self, *, on_workers: bool) -> None:
        if not self.kt.permit("run"):  # refused before the question, not after it
            return
        row = self._selected()
        if row is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.kt.start_run(row.name, on_workers=on_workers)

        if on_workers:
            question = ConfirmModal(f"Run {row.name} on workers?", "keyturn worker processes sharing this database "
                                    f"change its targets ({self._targets(row)}); this app follows the run.",
                                    yes="Queue run")
        else:
            question = ConfirmModal(f"Run {row.name} now?", f"It changes {row.secret_type.replace('ssh_key', 'SSH key')}s "
                                    f"on its targets ({self._targets(row)}) at once; p previews them.", yes="Run now")
        self.app.push_screen(question, done)

    def action_toggle_active(self) -> None:
        """Switch the highlighted task active or inactive."""
        if not self.kt.permit("edit"):
            return
        row = self._selected()
        if row is None:
            return
        try:
            tasks.set_active(self.ctx, row.name, not row.active)
        except StepUpRequired as exc:
            self.kt.step_up(exc, self.action_toggle_active)
            return
        except KeyturnError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"Task {row.name} is now {'inactive' if row.active else 'active'}")
        self.reload()

    def action_preview(self) -> None:
        """Show which accounts the highlighted task would change and which it skips."""
        row = self._selected()
        if row is None:
            return
        ctx, name = self.ctx, row.name
        self.read_in_thread("preview", lambda: visible_preview(ctx, tasks.get_task(ctx, name)),
                            lambda result: self._show_preview(name, result), name="Preview")

    def _show_preview(self, name: str, result: Preview) -> None:
        self.app.push_screen(PreviewModal(
            name, result.summary(), [(t.asset_name, t.username, t.host_key_pinned, t.self_change) for t in result.targets],
            [(e.asset_name, e.username, e.reason) for e in result.excluded]))
