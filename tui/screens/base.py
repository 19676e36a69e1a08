"""What every mode screen shares: the mode bar on top, the footer below, and the app's context."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input

from core.context import Context
from tui.reads import ThreadedReads
from tui.widgets.mode_bar import ModeBar

if TYPE_CHECKING:
    from tui.app import KeyturnApp


PAGE_GROUP = Binding.Group("Page", compact=True)


def page_bindings() -> list[Binding]:
    """[ and ] page through a long list; the footer shows them as one "[] Page" key."""
    return [Binding("left_square_bracket", "page(-1)", "Prev page", group=PAGE_GROUP),
            Binding("right_square_bracket", "page(1)", "Next page", group=PAGE_GROUP)]


class ModeScreen(ThreadedReads):
    """A main area of the app (App.MODES); subclasses compose their body in compose_body and load in reload
    (through read_in_thread: the UI thread never waits on the database)."""

    MODE = ""
    BINDINGS = [Binding("escape", "leave_input", "Leave field", show=False)]

    @property
    def kt(self) -> "KeyturnApp":
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def ctx(self) -> Context:
        """The open keyturn context."""
        return self.kt.ctx

    def now(self) -> datetime:
        """The app's clock (frozen in tests and screenshots)."""
        return self.kt.now()

    def compose(self) -> ComposeResult:
        yield ModeBar(self.MODE)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        """The mode's own widgets."""
        return iter(())

    def action_leave_input(self) -> None:
        """Esc in a search field goes back to the screen's list (the mode keys work again)."""
        if isinstance(self.focused, Input):
            table = next(iter(self.query(DataTable)), None)
            if table is not None:
                self.set_focus(table)
            else:
                self.set_focus(None)

    def on_screen_resume(self) -> None:
        """Load when shown: the first time, and again after another mode was shown (data may have changed).
        Textual resumes a new mode's screen twice; the second finds the first load under way and leaves it."""
        if not self.reading():
            self.reload()

    def reload(self) -> None:
        """Load this mode's data from the database (one page) in a thread worker; the tables fill when it arrives."""
