"""Every key of the screen underneath, with what it does: the footer at 80 columns shows only the frequent ones."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tui.widgets.table import PlainTable


class HelpModal(ModalScreen[None]):
    """HelpModal(title, [(key, what it does, where)]): a list to read; Esc, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, title: str, keys: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            table: DataTable = PlainTable(id="help-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("key", "does", "where")
            for key, what, where in self.keys:
                table.add_row(key, what, where)
            yield table
            yield Label("Esc close · ctrl+p finds any action by name", classes="dialog-hint")

    def action_close(self) -> None:
        """Back to the screen."""
        self.dismiss(None)
