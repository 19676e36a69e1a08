"""A DataTable that shows strings as they are: names and host errors come from users and hosts, not markup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable


def _plain(value: Any) -> Any:
    # DataTable renders a str cell as console markup: "[sudo] password for x" would vanish or raise.
    return Text(value) if isinstance(value, str) else value


def _same(value: Any) -> Any:
    # Text compares plain text and spans but not its own style: "failed" in red and in grey would be equal.
    return (value.plain, str(value.style), tuple(value.spans)) if isinstance(value, Text) else value


class PlainTable(DataTable):
    """DataTable whose str cells are literal text."""

    class PastEdge(Message):
        """The row cursor was moved down from the last row (step 1) or up from the first (step -1): a paged list
        turns its page (it holds a few screens of rows, not the whole list)."""

        def __init__(self, table: "PlainTable", step: int) -> None:
            super().__init__()
            self.table = table
            self.step = step

    _shown: list[tuple[str, tuple[Any, ...]]] | None = None
    _drawn_with: tuple[Any, ...] | None = None

    def add_row(self, *cells: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Add a row; str cells are wrapped in Text."""
        self._shown = None
        return super().add_row(*(_plain(c) for c in cells), **kwargs)

    def update_cell(self, row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Update a cell; a str value is wrapped in Text."""
        self._shown = None
        super().update_cell(row_key, column_key, _plain(value), **kwargs)

    def action_cursor_down(self) -> None:
        """Down; from the last row, ask the screen for the next page."""
        if self.cursor_type == "row" and self.row_count and self.cursor_row == self.row_count - 1:
            self.post_message(self.PastEdge(self, 1))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        """Up; from the first row, ask the screen for the previous page."""
        if self.cursor_type == "row" and self.row_count and self.cursor_row == 0:
            self.post_message(self.PastEdge(self, -1))
            return
        super().action_cursor_up()

    def clear(self, columns: bool = False) -> Any:
        """Remove the rows (and columns)."""
        self._shown = None
        return super().clear(columns)

    def show_rows(self, rows: Iterable[tuple[str, Sequence[Any]]]) -> bool:
        """Hold exactly these (key, cells) rows, in order; False when it holds them already.

        A screen reloads its page each time it is shown. Clearing and refilling the same rows made the UI thread
        measure and render the whole table again for nothing (40-70 ms of its CPU at 120x40 in
        benchmarks/tui_scale.py); unchanged rows keep what is drawn, cursor included.
        """
        wanted = [(key, tuple(_plain(c) for c in cells)) for key, cells in rows]
        same = [(key, tuple(_same(c) for c in cells)) for key, cells in wanted]
        if self._shown is not None and same == self._shown:
            return False
        self.clear()
        for key, cells in wanted:
            super().add_row(*cells, key=key)
        self._shown = same
        return True

    def notify_style_update(self) -> None:
        """Styles were applied again; the rendered cells are dropped at the next render only if they changed.

        Textual applies CSS to the whole screen on every mode switch, and DataTable drops every rendered cell
        each time, so showing a mode again re-rendered its table from scratch (30-50 ms of UI-thread CPU at
        120x40, benchmarks/tui_scale.py) although nothing about it had changed.
        """
        Widget.notify_style_update(self)

    def _style_signature(self) -> tuple[Any, ...]:
        # Everything DataTable's cell and row caches depend on besides their own keys: the table's style and its
        # component classes' (cursor, header, ...), which Textual computes after notify_style_update.
        return (self.rich_style, tuple(self.get_component_rich_style(name)
                                       for name in sorted(self.COMPONENT_CLASSES)))

    def render_lines(self, crop: Region) -> list[Strip]:
        """Render, first dropping rendered cells when the styles they were rendered with changed."""
        signature = self._style_signature()
        if signature != self._drawn_with:
            self._drawn_with = signature
            DataTable.notify_style_update(self)  # what DataTable does on every style update: drop rendered rows
        return super().render_lines(crop)

    async def _on_idle(self, event: events.Idle) -> None:
        """After DataTable sizes its columns for new rows, drop what it rendered before at the old widths.

        Rows now arrive from thread workers after the table has been drawn once; DataTable's render caches
        are not keyed on column widths, so without this the rows kept their first, too narrow, columns until
        something else (a cursor move) changed the table.
        """
        sizing = self._require_update_dimensions
        widths = [c.get_render_width(self) for c in self.ordered_columns] if sizing else []
        await super()._on_idle(event)
        if sizing and widths != [c.get_render_width(self) for c in self.ordered_columns]:
            # Only when a width changed: a reload of same-sized rows keeps what is drawn (a second full render of
            # the table on the UI thread for nothing, benchmarks/tui_scale.py).
            self._clear_caches()
            self.refresh()
