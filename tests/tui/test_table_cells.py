"""PlainTable draws one-line text cells without Rich's generic layout pass (benchmarks/tui_scale.py: the first
paint of a mode); every such cell must come out as DataTable itself draws it, at any width, cursor or not."""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tests.tui.test_defects import sync
from tui.widgets.format import status_text
from tui.widgets.table import PlainTable

# What the screens put in cells: plain names, markup-looking host errors, coloured statuses, styled words,
# empty cells, wide characters, text longer than its column, trailing blanks, an ellipsis overflow, a
# combining accent (more characters than cells).
CELLS: list[object] = [
    "host-00042", "[sudo] password for deploy:", status_text("failed"), status_text("success"),
    Text("NONE", "bold red"), Text("yes", "green"), "", None, "日本語のホスト名", "x" * 70, "trailing   ",
    status_text("failed").append(" 3h ago", style=""), Text("cut here please", overflow="ellipsis"),
    Text("cafe\u0301 ", "bold"), 12345,
]


class Cells(App[None]):
    CSS = "DataTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        table = PlainTable(id="cells", cursor_type="row", zebra_stripes=True)
        table.add_column("a", key="a")
        table.add_column("status [b]", key="b", width=12)
        table.add_column("c", key="c", width=4)
        for i, cell in enumerate(CELLS):
            table.add_row(cell, CELLS[-1 - i], cell, key=str(i))
        yield table


def drawn(lines: list[list[Segment]]) -> list[list[tuple[str, object]]]:
    """Segments merged where the style is the same (where one path splits a run of spaces and the other not)."""
    return [[(s.text, s.style) for s in Segment.simplify(line)] for line in lines]


@sync
async def test_one_line_cells_match_datatable() -> None:
    """Header and body cells, with and without the cursor and the hover, at the column's width and narrower."""
    app = Cells()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.query_one(PlainTable)
        checked = 0
        for row in range(-1, table.row_count):
            for column, spec in enumerate(table.ordered_columns):
                for width in {spec.get_render_width(table), 3, 5}:
                    for cursor, hover in ((False, False), (True, False), (False, True)):
                        style = table.rich_style
                        table._clear_caches()
                        fast = table._one_line_cell(row, column, style, width, cursor, hover)
                        assert fast is not None, (row, column)
                        table._clear_caches()
                        slow = DataTable._render_cell(table, row, column, style, width, cursor, hover)
                        assert drawn(fast) == drawn(slow), (row, column, width, cursor, hover)
                        checked += 1
        assert checked == (len(CELLS) + 1) * 3 * 3 * 3  # rows with the header, columns, widths, cursor states


@sync
async def test_column_widths_match_datatable() -> None:
    """The columns PlainTable sizes for new rows are as wide as DataTable's own measuring makes them."""
    app = Cells()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.query_one(PlainTable)
        ours = [column.content_width for column in table.ordered_columns]
        fresh = PlainTable()
        for column in table.ordered_columns:
            fresh.add_column(column.label, key=column.key.value, width=None if column.auto_width else column.width)
        for column, empty in zip(table.ordered_columns, fresh.ordered_columns):
            column.content_width = empty.content_width
        DataTable._update_dimensions(table, list(table.rows))
        assert ours == [column.content_width for column in table.ordered_columns]
        assert ours[0] == 70  # the longest cell of the first column ("x" * 70)
