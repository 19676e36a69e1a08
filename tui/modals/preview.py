"""Which accounts a task would change, and which it leaves out and why: PreviewModal(preview)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label
from tui.widgets.table import PlainTable


class PreviewModal(ModalScreen[None]):
    """Targets and exclusions of a task, as core.targets.preview computed them."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, task_name: str, summary: str, targets: list[tuple[str, str, bool, bool]],
                 excluded: list[tuple[str, str, str]]) -> None:
        """targets: (asset, account, host key pinned, changes itself without the privileged account)."""
        super().__init__()
        self.task_name = task_name
        self.summary = summary
        self.targets = targets
        self.excluded = excluded

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(markup=False, content=f"Targets of {self.task_name}", classes="dialog-title")
            yield Label(self.summary, id="preview-summary", markup=False)
            table: DataTable = PlainTable(id="preview-table", cursor_type="row")
            table.add_columns("asset", "account", "will", "reason")
            for asset, user, pinned, own in self.targets:
                table.add_row(asset, user, ("self-change" if own else "change") if pinned else "FAIL",
                              "" if pinned else "no pinned host key: k in Inventory trusts it")
            for asset, user, reason in self.excluded:
                table.add_row(asset, user, "skip", reason)
            yield table
            yield Label("Esc close", classes="dialog-hint")

    def action_close(self) -> None:
        """Close the preview."""
        self.dismiss(None)
