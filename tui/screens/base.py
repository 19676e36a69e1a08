"""What every mode screen shares: the mode bar on top, the footer below, and the app's context."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from core.context import Context
from tui.reads import ThreadedReads
from tui.writes import write_in_thread
from tui.widgets.footer import ModeFooter
from tui.widgets.mode_bar import ModeBar
from tui.widgets.table import PlainTable

if TYPE_CHECKING:
    from tui.app import KeyturnApp


PAGE_GROUP = Binding.Group("Page", compact=True)
T = TypeVar("T")


def page_bindings() -> list[Binding]:
    """[ and ] page through a long list; the footer shows them as one "[] Page" key."""
    return [Binding("left_square_bracket", "page(-1)", "Prev page", group=PAGE_GROUP),
            Binding("right_square_bracket", "page(1)", "Next page", group=PAGE_GROUP)]


class ModeScreen(ThreadedReads):
    """A main area of the app (App.MODES); subclasses compose their body in compose_body and load in reload
    (through read_in_thread: the UI thread never waits on the database)."""

    MODE = ""
    PAGED_TABLE = ""  # id of the table [ ] page through (its screen has page_offset, total and action_page)
    _turning = 0  # a page turned by the cursor: 1 puts the cursor on its first row, -1 on its last
    BINDINGS = [Binding("escape", "leave_input", "Leave field", show=False)]

    def __init__(self) -> None:
        super().__init__()
        # A new screen's widgets get the stylesheet as they mount. Textual's screen starts as "styles older than
        # the app's" (-1), so the first switch_mode to it re-parsed the whole stylesheet (every widget's
        # DEFAULT_CSS) and re-applied it to the app twice, once in _init_mode and once in switch_mode, and a
        # third time on the next visit when the screen was not mounted yet at the second: 30-60 ms of UI-thread
        # CPU per first visit for nothing (benchmarks/tui_scale.py). Screens built after a theme change are
        # current too: the change bumps the app's count and Textual refreshes the CSS itself. Not the first
        # screen: its refresh is what first applies the theme's variables to the stylesheet.
        app = self.app
        if app._screen_stacks.get(app.current_mode):
            self._css_update_count = app._css_update_count

    def on_mount(self) -> None:
        """Mark the styles current once mounted (see __init__)."""
        # The first mode's screen had the stylesheet refreshed for it before it was mounted, which Textual leaves
        # marked stale: the first switch back to it re-parsed the stylesheet and restyled the app (70 ms of
        # UI-thread CPU in one go, benchmarks/tui_scale.py). A theme change still pending refreshes it anyway.
        self._css_update_count = self.app._css_update_count

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

    def write_in_thread(self, name: str, write: Callable[[], T], done: Callable[[T], None], *,
                        again: Callable[[], object] | None = None) -> None:
        """Run a write (a removal, a pin, an import) in a thread worker; done(result) on the UI thread once it
        committed. When core asks for a TOTP code first (it wrote nothing), ask for one, then again(); any other
        failure the App shows, titled "<name> failed", in the words the CLI prints."""
        from core.stepup import StepUpRequired

        if again is None:
            write_in_thread(self, name, write, done, shows=())
            return

        def failed(exc: Exception) -> None:
            if isinstance(exc, StepUpRequired):
                self.kt.step_up(exc, again)

        write_in_thread(self, name, write, done, failed=failed, shows=(StepUpRequired,))

    def compose(self) -> ComposeResult:
        yield ModeBar(self.MODE)
        yield from self.compose_body()
        yield ModeFooter(compact=True)

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

    def on_plain_table_past_edge(self, event: PlainTable.PastEdge) -> None:
        """The cursor went past the last (first) row of the paged table: the next (previous) page, if any."""
        page = getattr(self, "action_page", None)
        if page is None or not self.PAGED_TABLE or event.table.id != self.PAGED_TABLE:
            return
        event.stop()
        offset, total = getattr(self, "page_offset", 0), getattr(self, "total", 0)
        if (event.step < 0 and offset == 0) or (event.step > 0 and offset + event.table.row_count >= total):
            return
        self._turning = event.step
        page(event.step)

    def place_cursor(self, table: DataTable) -> None:
        """After a page arrived: a page turned by the cursor puts it on its first (or last) row."""
        step, self._turning = self._turning, 0
        if step and table.row_count:
            table.move_cursor(row=0 if step > 0 else table.row_count - 1)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Load when shown: the first time, and again after another mode was shown (data may have changed).
        Textual resumes a new mode's screen twice; the second finds the first load under way and leaves it."""
        if self._css_update_count == self.app._css_update_count:
            # Screen's own resume handler (it runs after this one) re-applies the stylesheet to every widget of the
            # screen; with the styles current that is 5-20 ms of UI-thread CPU per switch, twice on a first visit
            # (benchmarks/tui_scale.py). A theme change while the mode was away is applied by switch_mode itself
            # (refresh_css), and Textual resumes a screen under a closed modal without it the same way.
            event.refresh_styles = False
        if not self.reading():
            self.reload()

    def reload(self) -> None:
        """Load this mode's data from the database (one page) in a thread worker; the tables fill when it arrives."""
