"""Tasks mode: every change-secret task with its targets, schedule and last run; create, edit, run them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from core import tasks
from core.targets import Preview, visible_preview
from core.services.views import TaskRow, task_names, task_rows
from tui.modals.confirm import ConfirmModal
from tui.modals.preview import PreviewModal
from tui.modals.prompt import PromptModal
from tui.modals.task_form import TaskFormModal, task_name_validators
from tui.screens.base import ModeScreen, page_bindings
from tui.widgets.format import plural, ago, clip, status_text, show_text
from tui.widgets.table import PlainTable

# A page, not the whole list: a DataTable measures and renders every row it holds on the UI thread, and 1,000
# tasks at once held it for 0.1-0.3 s (benchmarks/tui_scale.py); [ ] pages, like Records and History.
PAGE = 100


class TasksScreen(ModeScreen):
    """The task list; n/e/c/d manage tasks, r runs one now, a toggles active, p previews targets."""

    MODE = "tasks"
    PAGED_TABLE = "tasks-table"
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("e,enter", "edit", "Edit"),
        Binding("r", "run", "Run now"),
        Binding("W", "run_on_workers", "Run on workers", show=False),
        Binding("p", "preview", "Preview targets"),
        Binding("d", "delete", "Delete"),
        Binding("c", "copy", "Copy", show=False),
        Binding("a", "toggle_active", "Active on/off", show=False),
        *page_bindings(),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page_offset = 0
        self.total = 0

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
        ctx, keep, offset = self.ctx, select or self.selected_name(), self.page_offset

        def page() -> tuple[str | None, int, int, list[TaskRow]]:
            names = task_names(ctx)  # sorted, as task_rows lists them: `select` is found on its page
            start = names.index(select) // PAGE * PAGE if select in names else offset
            start = max(0, min(start, (len(names) - 1) // PAGE * PAGE if names else 0))
            return keep, len(names), start, task_rows(ctx, offset=start, limit=PAGE)

        self.read_in_thread("tasks", page, self._show_rows, name="Loading tasks")

    def _show_rows(self, data: tuple[str | None, int, int, list[TaskRow]]) -> None:
        keep, total, self.page_offset, rows = data
        if (total > PAGE) != (self.total > PAGE):
            self.refresh_bindings()  # [ ] appear in the footer only when there is another page
        self.total = total
        keep = self.selected_name() if keep is None else keep
        table = self.query_one("#tasks-table", PlainTable)
        now = self.now()
        cells = []
        for t in rows:
            last = Text("never", "dim")
            if t.last_status:
                last = status_text(t.last_status).append(f" {ago(t.last_started_at, now)}", style="")
            cells.append((t.name, (t.name, Text("yes", "green") if t.active else Text("no", "dim"),
                                   clip(",".join(t.usernames), 14), self._targets(t), t.schedule, last)))
        table.show_rows(cells)
        shown = plural(total, "task") if total <= PAGE else (
            f"Tasks {self.page_offset + 1 if rows else 0}-{self.page_offset + len(rows)} of {total}  ([ ] page)")
        show_text(self.query_one("#tasks-count", Label), shown)
        if keep and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        self.place_cursor(table)
        self._rows = {t.name: t for t in rows}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool:
        """[ ] only when the tasks fill more than one page (the footer at 80 columns has no room to spare)."""
        return False if action == "page" and self.total <= PAGE else True

    def action_page(self, step: int) -> None:
        """Previous or next page of tasks."""
        self.page_offset = max(0, self.page_offset + step * PAGE)
        self.reload(select="")

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

        ctx = self.ctx

        def copied(new_name: str) -> None:
            self.notify(f"Copied {row.name} to {new_name}")
            self.reload(select=new_name)

        def done(new_name: str | None) -> None:
            if new_name:
                self.write_in_thread(f"Copying task {row.name}", lambda: tasks.copy_task(ctx, row.name, new_name),
                                     lambda _: copied(new_name), again=lambda: done(new_name))

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

        ctx = self.ctx

        def deleted(_: object) -> None:
            self.notify(f"Deleted task {row.name}")
            self.reload()

        def done(yes: bool | None) -> None:
            if yes:
                self.write_in_thread(f"Deleting task {row.name}", lambda: tasks.delete_task(ctx, row.name), deleted)

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
        ctx, name, active = self.ctx, row.name, not row.active

        def switched(_: object) -> None:
            self.notify(f"Task {name} is now {'active' if active else 'inactive'}")
            self.reload()

        self.write_in_thread(f"Switching task {name} {'on' if active else 'off'}",
                             lambda: tasks.set_active(ctx, name, active), switched, again=self.action_toggle_active)

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
