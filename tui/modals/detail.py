"""Long text that a table cell cannot hold (an audit event's detail, a host error): DetailModal(title, text)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class DetailModal(ModalScreen[None]):
    """The whole text, wrapped to the dialog and scrollable; Esc or q closes."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="detail-dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(id="detail-body"):
                yield Static(self.text, markup=False, id="detail-text")
            yield Label("Esc close", classes="dialog-hint")

    def on_mount(self) -> None:
        """The text scrolls with the arrow keys."""
        self.query_one("#detail-body").focus()

    def action_close(self) -> None:
        """Back to the list."""
        self.dismiss(None)
