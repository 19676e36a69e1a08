"""What the app's forms (task, asset, account) share: Save and Cancel buttons that do what their keys do, and
Esc that asks before throwing typed work away."""

from __future__ import annotations

from typing import TypeVar

from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button

ResultType = TypeVar("ResultType")


class FormModal(ModalScreen[ResultType]):
    """A form: subclasses compose it (a #form-body VerticalScroll, #save and #cancel buttons), implement
    action_save and _snapshot (every value the user can change), and set self._initial = self._snapshot() once
    mounted."""

    def action_save(self) -> None:  # pragma: no cover - every form defines it
        raise NotImplementedError

    def _snapshot(self) -> tuple:  # pragma: no cover - every form defines it
        raise NotImplementedError

    def _focus_field(self, field: Widget, around: Widget | None = None) -> None:
        """Focus field at once (the next key typed belongs there) and scroll it, or the field group around it,
        to the top once the layout knows the height of an error line just shown."""
        self.set_focus(field, scroll_visible=False)
        body = self.query_one("#form-body", VerticalScroll)
        self.call_after_refresh(body.scroll_to_widget, around or field.parent or field, animate=False, top=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Save and Cancel buttons do what their keys do."""
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without saving; when something was typed, ask first (as delete does)."""
        if self._snapshot() == getattr(self, "_initial", None):
            self.dismiss(None)
            return
        from tui.modals.confirm import ConfirmModal

        self.app.push_screen(ConfirmModal("Discard this form?", "What you typed is not saved.", yes="Discard",
                                          no="Keep editing", danger=True),
                             lambda yes: self.dismiss(None) if yes else None)
