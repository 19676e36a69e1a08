"""A DataTable that shows strings as they are: names and host errors come from users and hosts, not markup."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.color import Color
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

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        """A cell's lines: one-line text cells the short way, anything else as DataTable renders it."""
        lines = self._one_line_cell(row_index, column_index, base_style, width, cursor, hover)
        if lines is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        return lines

    def _one_line_cell(self, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool,
                       hover: bool) -> list[list[Segment]] | None:
        """The segments DataTable._render_cell makes of a one-line Text cell in a row of height 1, without Rich's
        Styled(Padding(cell)) render pass; None for any other cell (DataTable renders those).

        DataTable renders every cell through Rich's generic layout (measure, pad, wrap, split and crop lines):
        about 0.1-0.25 ms per cell, and the first paint of a mode draws 250-330 cells at 120x40, 30-80 ms of
        UI-thread CPU in one go (benchmarks/tui_scale.py). This builds the same segments, with the same cache
        key, from the same Text methods Rich calls (rstrip_end, truncate, join, render); a test compares the
        two for every kind of cell the screens show (tests/tui/test_table_cells.py).
        """
        if column_index < 0:
            return None  # row labels: keyturn's tables have none
        header = row_index == -1
        if header:
            row_key = self._header_row_key
            if self.header_height != 1:
                return None
        else:
            row_key = self._row_locations.get_key(row_index)
            row = self.rows.get(row_key) if row_key is not None else None
            if row is None or row.height != 1:
                return None
        column_key = self._column_locations.get_key(column_index)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
                     self._pseudo_class_state)
        cached = self._cell_render_cache.get(cache_key)
        if cached is not None:
            return cached
        cell = self._get_row_renderables(row_index).cells[column_index]
        if not isinstance(cell, Text):
            return None
        env = self._pass_styles.get("env") if self._pass_styles is not None else None
        if env is None:
            env = (self.app.console, self.app.console_options, self.cell_padding, self.show_cursor,
                   self._show_hover_cursor, self.cursor_foreground_priority == "css",
                   self.cursor_background_priority == "css", self.fixed_rows, self.fixed_columns)
            if self._pass_styles is not None:
                self._pass_styles["env"] = env
        console, options, pad, show_cursor, show_hover, fg_css, bg_css, fixed_rows, fixed_columns = env
        inner = width - 2 * pad
        if ((cell.justify or options.justify or "default") != "default" or cell.no_wrap is False
                or cell.end not in ("", "\n") or "\n" in cell.plain or "\t" in cell.plain or inner < 1):
            return None
        plain = cell.plain
        width_of_text = cell_len(plain)
        if width_of_text > inner or len(plain) > inner:
            line = cell.copy()
            line.rstrip_end(inner)
            line.truncate(inner, overflow=cell.overflow or options.overflow or "fold")
            plain = line.plain
            width_of_text = cell_len(plain)
        else:
            line = cell  # rstrip_end and truncate leave a text that fits (in characters and cells) as it is
        fill = inner - width_of_text
        if fill < 0:
            return None
        if not cell.style and not cell.spans:
            # Unstyled text: the padding, the text and the fill all take the cell's style, one segment.
            segments = [Segment(f"{' ' * pad}{plain}{' ' * (fill + pad)}")]
        else:
            # Text.__rich_console__ joins its lines (the line's own style becomes a span) and renders that.
            segments = [Segment(" " * pad)] if pad else []
            segments += [s for s in Text("\n").join([line]).render(console) if s.text]
            if fill:
                segments.append(Segment(" " * fill))
            if pad:
                segments.append(Segment(" " * pad))
        fixed = not header and (row_index < fixed_rows or column_index < fixed_columns)
        component_style, post_style = self._get_styles_to_render_cell(
            header, False, fixed, hover, cursor, show_cursor, show_hover, fg_css, bg_css)
        style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        lines = [list(Segment.apply_style(segments, style, post_style))]
        self._cell_render_cache[cache_key] = lines
        return lines

    def _update_dimensions(self, new_rows: Iterable[Any]) -> None:
        """Widen the columns for new rows: one-line text cells measured by their text, the rest by DataTable.

        DataTable measures each new cell through Rich (building console options per cell): 10-25 ms of UI-thread
        CPU for a page of 100 rows of 8 columns. A Text's width is its longest line's cell length whatever the
        options (rich.text.Text.__rich_measure__), which is what this computes for rows DataTable would size the
        same way (no label, fixed height); the others, and the table's virtual size, go through DataTable.
        """
        rest = []
        columns = self.ordered_columns
        for row_key in new_rows:
            row_index = self._row_locations.get(row_key)
            row = self.rows.get(row_key)
            if row_index is None or row is None or row.label is not None or row.auto_height:
                rest.append(row_key)
                continue
            cells = self._get_row_renderables(row_index).cells
            if not all(isinstance(cell, Text) for cell in cells):
                rest.append(row_key)
                continue
            for column, cell in zip(columns, cells):
                plain = cell.plain
                width = max(map(cell_len, plain.splitlines())) if plain else 0
                if width > column.content_width:
                    column.content_width = width
        super()._update_dimensions(rest)

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
        self._pass_styles = {}
        try:
            signature = self._style_signature()
            if signature != self._drawn_with:
                self._drawn_with = signature
                DataTable.notify_style_update(self)  # what DataTable does on every style update: drop rendered rows
            return super().render_lines(crop)
        finally:
            self._pass_styles = None

    # DataTable asks for its own style, its row's stripe style and its background colours on every line it draws,
    # and each answer walks the widget's ancestors' styles (about 0.1 ms): within one render_lines they cannot
    # change.
    _pass_styles: dict[Any, Any] | None = None

    def _per_pass(self, key: Any, compute: Callable[[], Any]) -> Any:
        """compute() once per render pass under key (every time outside a pass)."""
        memo = self._pass_styles
        if memo is None:
            return compute()
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    @property
    def rich_style(self) -> Style:
        """The table's Rich style (computed once per render pass)."""
        style: Style = self._per_pass("table", lambda: super(PlainTable, self).rich_style)
        return style

    @property
    def background_colors(self) -> tuple[Color, Color]:
        """The background colours behind and of the table (computed once per render pass)."""
        colors: tuple[Color, Color] = self._per_pass("background", lambda: super(PlainTable, self).background_colors)
        return colors

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        # What DataTable's choice depends on: header, fixed row, odd or even stripe, or the table's own style.
        key = (row_index == -1, row_index < self.fixed_rows, row_index % 2, base_style)
        style: Style = self._per_pass(key, lambda: super(PlainTable, self)._get_row_style(row_index, base_style))
        return style

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
