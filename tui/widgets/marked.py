"""A checkbox and a selection list whose state reads without colour: X when on, blank when off.

Textual draws the same X for both states and tells them apart by shade only, which a 256-colour terminal
over SSH (or a colour-blind admin) may not show.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList
from textual.widgets._toggle_button import ToggleButton


class MarkedCheckbox(Checkbox):
    """Checkbox showing X only when checked."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's attribute name
        """X when checked, a blank when not."""
        return ToggleButton.BUTTON_INNER if self.value else " "


class MarkedSelectionList(SelectionList):  # type: ignore[type-arg]
    """SelectionList showing X only beside selected options."""

    def render_line(self, y: int) -> Strip:
        """The option's line with its mark blanked when it is not selected."""
        strip = super().render_line(y)
        try:
            option = self.get_option_at_index(self.scroll_offset.y + y)
        except Exception:  # past the last option: nothing to mark
            return strip
        if option.value in self._selected:
            return strip
        segments = list(strip)
        for i, segment in enumerate(segments):
            if segment.text == ToggleButton.BUTTON_INNER:
                segments[i] = Segment(" ", segment.style)
                return Strip(segments, strip.cell_length)
        return strip
