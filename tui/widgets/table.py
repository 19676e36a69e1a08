"""A DataTable that shows strings as they are: names and host errors come from users and hosts, not markup."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import DataTable


def _plain(value: Any) -> Any:
    # DataTable renders a str cell as console markup: "[sudo] password for x" would vanish or raise.
    return Text(value) if isinstance(value, str) else value


class PlainTable(DataTable):
    """DataTable whose str cells are literal text."""

    def add_row(self, *cells: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Add a row; str cells are wrapped in Text."""
        return super().add_row(*(_plain(c) for c in cells), **kwargs)

    def update_cell(self, row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Update a cell; a str value is wrapped in Text."""
        super().update_cell(row_key, column_key, _plain(value), **kwargs)

    async def _on_idle(self, event: events.Idle) -> None:
        """After DataTable sizes its columns for new rows, drop what it rendered before at the old widths.

        Rows now arrive from thread workers after the table has been drawn once; DataTable's render caches
        are not keyed on column widths, so without this the rows kept their first, too narrow, columns until
        something else (a cursor move) changed the table.
        """
        sizing = self._require_update_dimensions
        await super()._on_idle(event)
        if sizing:
            self._clear_caches()
            self.refresh()
