"""Show secrets masked until asked: RevealModal(title, items) with items of (label, secret) or RevealedSecret.

A secret is drawn only on this screen (the app runs on the alternate screen: no scrollback), is masked again
after Settings.reveal_hide_seconds, and is copied through OSC 52 so copying works over SSH. Nothing revealed
goes to stdout, a log or a notification.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Label, ListItem, ListView, Static

from core.reveal import RevealedSecret

MASK = "\u2022" * 12  # fixed length: the mask does not tell how long the secret is
RevealItem = Union[tuple[str, str], RevealedSecret]


def _pair(item: RevealItem) -> tuple[str, str]:
    if isinstance(item, RevealedSecret):
        return item.label, item.secret
    label, secret = item
    return str(label), str(secret)


class SecretRow(ListItem):
    """One labelled secret, masked or shown."""

    def __init__(self, label: str, secret: str) -> None:
        super().__init__()
        self.label = label
        self._secret = secret
        self.shown = False

    def __repr__(self) -> str:
        return f"SecretRow({self.label!r})"

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="secret-label", markup=False)
        # markup=False: a password may contain [brackets] that Rich would read as styles.
        yield Static(MASK, classes="secret-value", markup=False)

    def show(self, shown: bool) -> None:
        """Draw the secret or the mask."""
        self.shown = shown
        self.query_one(".secret-value", Static).update(self._secret if shown else MASK)
        self.set_class(shown, "-shown")


class RevealModal(ModalScreen[None]):
    """Secrets, masked until `s` (or Enter) shows the highlighted one; `c` copies it; Esc closes."""

    BINDINGS = [
        Binding("s,space", "toggle", "Show/hide"),
        Binding("a", "show_all", "Show all"),
        Binding("c", "copy", "Copy"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, title: str | Sequence[RevealItem], items: Sequence[RevealItem] | None = None, *,
                 hide_seconds: float | None = None) -> None:
        super().__init__()
        if not isinstance(title, str):  # RevealModal(items): the title is implied
            title, items = "Secrets", title
        self.title_text = title
        self._items = [_pair(i) for i in (items or [])]
        self._hide_seconds = hide_seconds
        self._hide_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"RevealModal({self.title_text!r}, {len(self._items)} items)"

    @property
    def hide_seconds(self) -> float:
        """Seconds a shown secret stays visible: the constructor's value, else the app's settings, else 30."""
        if self._hide_seconds is not None:
            return self._hide_seconds
        ctx = getattr(self.app, "ctx", None)
        return float(getattr(getattr(ctx, "settings", None), "reveal_hide_seconds", 30))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield ListView(*(SecretRow(label, secret) for label, secret in self._items), id="reveal-list")
            yield Static(f"s show/hide · a show all · c copy · Esc close · shown secrets hide after "
                         f"{self.hide_seconds:g} s", classes="dialog-hint", id="reveal-hint", markup=False)

    def on_mount(self) -> None:
        """The list has the focus so the keys act on the highlighted secret."""
        self.query_one(ListView).focus()

    @property
    def rows(self) -> list[SecretRow]:
        """The secret rows in order."""
        return list(self.query(SecretRow))

    def _current(self) -> SecretRow | None:
        item = self.query_one(ListView).highlighted_child
        return item if isinstance(item, SecretRow) else None

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        """Enter on a row toggles it like `s`."""
        event.stop()
        self.action_toggle()

    def action_toggle(self) -> None:
        """Show or hide the highlighted secret."""
        row = self._current()
        if row is not None:
            row.show(not row.shown)
            self._arm_timer()

    def action_show_all(self) -> None:
        """Show every secret."""
        for row in self.rows:
            row.show(True)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._hide_timer is not None:
            self._hide_timer.stop()
            self._hide_timer = None
        if any(r.shown for r in self.rows):
            self._hide_timer = self.set_timer(self.hide_seconds, self.hide_all)

    def hide_all(self) -> None:
        """Mask every secret again."""
        for row in self.rows:
            row.show(False)
        self._hide_timer = None

    def action_copy(self) -> None:
        """Copy the highlighted secret with OSC 52 (works over SSH); the notice never holds the secret."""
        row = self._current()
        if row is None:
            return
        self.app.copy_to_clipboard(row._secret)
        self.notify(f"copied {row.label} to the clipboard", title="Copy", timeout=3, markup=False)

    def action_close(self) -> None:
        """Close; the secrets leave the screen with it."""
        self.hide_all()
        self.dismiss(None)
