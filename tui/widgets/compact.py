"""Borderless form widgets, so a whole form fits an 80x24 terminal."""

from __future__ import annotations

from textual.dom import DOMNode


def make_compact(root: DOMNode) -> None:
    """Switch every input, select, checkbox, selection list and button under root to its compact style."""
    for widget in root.query("Input, Select, Checkbox, SelectionList, Button"):
        widget.compact = True  # type: ignore[attr-defined]
