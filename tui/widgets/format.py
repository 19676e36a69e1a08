"""How dates, durations and statuses look on screen (relative to the app's clock, so snapshots are stable)."""

from __future__ import annotations

from datetime import datetime, timezone

from typing import TYPE_CHECKING

from rich.text import Text

from core.wording import plural as plural  # the screens and commands take it from here

if TYPE_CHECKING:
    from textual.widgets import Static

# Outcome colours used by every table and the live log: green success, red failure, yellow unverified.
STATUS_STYLES: dict[str, str] = {
    "success": "green",
    "failed": "red",
    "partial": "yellow",
    "unverified": "yellow",
    "interrupted": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "pending": "cyan",
    "pushing": "cyan",
    "error": "red",
}


def status_text(status: str) -> Text:
    """A status word in its outcome colour."""
    return Text(status or "-", style=STATUS_STYLES.get(status, ""))


def when(dt: datetime | None, now: datetime) -> str:
    """Absolute UTC time, short for today: '14:05' today, '03-01 14:05' this year, else the full date."""
    if dt is None:
        return "-"
    dt = dt.astimezone(timezone.utc)
    if dt.date() == now.astimezone(timezone.utc).date():
        return dt.strftime("%H:%M")
    if dt.year == now.year:
        return dt.strftime("%m-%d %H:%M")
    return dt.strftime("%Y-%m-%d")


def ago(dt: datetime | None, now: datetime) -> str:
    """'5m ago', '3h ago', '2d ago'; '-' when never."""
    if dt is None:
        return "-"
    seconds = int((now - dt).total_seconds())
    if seconds < 0:
        return "in " + duration(-seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def duration(seconds: float | None) -> str:
    """'42s', '3m', '5h', '2d'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def clip(text: str, width: int) -> str:
    """Cut text to width characters with an ellipsis, on one line."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"




def show_text(widget: "Static", content: "str | Text") -> None:
    """Set a Label's (or Static's) text unless it shows that text already.

    Textual's update() always asks for a new layout of the whole screen, and a screen reloads each time it is
    shown: the same count line set again cost a full reflow on every mode switch (benchmarks/tui_scale.py)."""
    current = widget.content
    if type(current) is type(content) and (
            current == content if isinstance(content, str)
            else (current.plain, current.spans, str(current.style)) == (content.plain, content.spans, str(content.style))):
        return
    widget.update(content)
