"""The one-line bar at the top of every mode: which modes exist, their keys, and which one is shown."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ModeBar(Static):
    """'keyturn  o Overview  t Tasks  ...' with the current mode highlighted."""

    def __init__(self, current: str) -> None:
        super().__init__(id="mode-bar")
        self.current = current

    def on_mount(self) -> None:
        """Draw once: the bar belongs to one mode screen, so its highlight never changes."""
        text = Text("keyturn ", style="bold")
        for mode, (key, title) in self.app.MODE_KEYS.items():  # type: ignore[attr-defined]
            style = "reverse bold" if mode == self.current else ""
            text.append(" ")
            text.append(f" {key} {title} ", style=style)
        running = len(getattr(self.app, "active_runs", lambda: [])())
        self.update(text)
        self.set_class(bool(running), "-running")
