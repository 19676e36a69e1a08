"""The footer of every mode: Textual's Footer, rebuilt only when the keys it shows changed."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # not exported by textual.widgets; the keys Footer composes


class ModeFooter(Footer):
    """Footer that recomposes only when the shown keys changed, and whose keys mount already compact.

    Textual's Footer removes and mounts all its keys on every bindings update of its screen, and a mode switch
    or a focus change brings several (the mode's first visit mounted its keys ten times over). Each FooterKey
    then added its "-compact" class on mount, restyling itself once more. Together 10-50 ms of UI-thread CPU
    per mode switch (benchmarks/tui_scale.py) for the same row of keys.
    """

    _composed: tuple[Any, ...] | None = None

    def _shown_keys(self) -> tuple[Any, ...]:
        # Everything Footer.compose reads from the bindings (its group, description, enabled state, tooltip).
        return tuple((key, b.action, b.description, b.key_display, b.group, enabled, tooltip)
                     for key, (_, b, enabled, tooltip) in self.screen.active_bindings.items()
                     if b.show or key == self.app.COMMAND_PALETTE_BINDING)

    def compose(self) -> ComposeResult:
        """Footer's keys, with the compact class set before they mount (then their compact watcher is a no-op)."""
        self._composed = self._shown_keys() if self._bindings_ready else None
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                widget.set_class(self.compact, "-compact", update=False)
            yield widget

    async def recompose(self) -> None:
        """Recompose, unless the keys shown are the ones composed last time."""
        if self._composed is not None and self.is_attached and self._shown_keys() == self._composed:
            return
        await super().recompose()
