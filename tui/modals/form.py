"""What the app's forms (task, asset, account) share: Save and Cancel buttons that do what their keys do, Esc
that asks before throwing typed work away, one error line per field, the TOTP step-up before a save, and the save
itself in a thread worker (one at a time; the form closes once it has committed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import ValidationResult
from textual.widget import Widget
from textual.widgets import Button, Input, Label

from core.context import Context
from core.errors import KeyturnError
from core.stepup import StepUpRequired
from tui.writes import write_in_thread

ResultType = TypeVar("ResultType")


class FormModal(ModalScreen[ResultType]):
    """A form: subclasses compose it (a #form-body VerticalScroll, #save and #cancel buttons, each field in a
    group #f-KEY holding its error line #err-KEY, and #err-form), implement action_save and _snapshot (every
    value the user can change), and set self._initial = self._snapshot() once mounted.

    There is no on_input_changed here on purpose: Textual runs the on_* (and @on) handlers of every class up
    the MRO, so a handler here would run for every form whether it wants it or not. A form's own handler calls
    show_typing_error for the inputs whose error line follows the typing.
    """

    ctx: Context  # set by each form's __init__
    saving = False  # a save is in flight: a second one is not started, and Esc waits for it

    def save_in_thread(self, name: str, write: Callable[[], Any], saved: Callable[[Any], None]) -> None:
        """Run the save write() in a thread worker (not on the UI thread), then saved(result) once it committed.
        Its errors go to save_failed, on the UI thread, as if the save had raised them here."""
        if self.saving:
            return
        self.saving = True

        def done(result: Any) -> None:
            self.saving = False
            saved(result)

        def failed(exc: Exception) -> None:
            self.saving = False
            self.save_failed(exc)

        write_in_thread(self, name, write, done, failed=failed, shows=(KeyturnError,))

    def save_failed(self, exc: Exception) -> None:
        """Show why a save failed (nothing was written): a step-up asks for a code, then saves again; forms put an
        InputError on its field's line (field_failed). Anything but a KeyturnError the App shows."""
        from core.errors import InputError

        if isinstance(exc, StepUpRequired):
            self.step_up_then_save(exc)
        elif isinstance(exc, InputError):
            self.field_failed(exc)
        elif isinstance(exc, KeyturnError):  # not allowed, or the audit trail cannot be written
            self.show_error("form", str(exc))

    def field_failed(self, exc: Exception) -> None:
        """Put a core InputError on the line of the field it names, and the focus on that field."""
        self.show_error("form", str(exc))

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

    @staticmethod
    def field_group(key: str, title: str, *widgets: Widget, note: str = "") -> Vertical:
        """Field key's group #f-KEY: its title, its widgets, an optional note and its error line #err-KEY."""
        parts: list[Widget] = [Label(title, classes="field-title"), *widgets]
        if note:
            parts.append(Label(note, markup=False, id=f"note-{key}", classes="field-note"))
        error = Label("", markup=False, id=f"err-{key}", classes="field-error")
        error.display = False
        parts.append(error)
        return Vertical(*parts, id=f"f-{key}", classes="field")

    @staticmethod
    def buttons() -> Horizontal:
        """Save and Cancel, with their keys on them."""
        return Horizontal(Button("Save (ctrl+s)", id="save", variant="primary"), Button("Cancel (esc)", id="cancel"),
                          classes="dialog-buttons")

    def show_error(self, key: str, message: str) -> None:
        """Put message on the error line of field key ('form': the form's own line); empty hides the line."""
        label = self.query_one(f"#err-{key}", Label)
        label.update(message)
        label.display = bool(message)

    def show_check(self, key: str, result: ValidationResult | None) -> bool:
        """Show a validator's verdict on field key's error line (hidden when it passed); whether it passed."""
        if result is None or result.is_valid:
            self.show_error(key, "")
            return True
        self.show_error(key, "; ".join(result.failure_descriptions))
        return False

    @staticmethod
    def field_key(widget: Widget) -> str:
        """The field a widget belongs to: the KEY of the #f-KEY group around it ('form' when none)."""
        for ancestor in widget.ancestors_with_self:
            if ancestor.id and ancestor.id.startswith("f-"):
                return ancestor.id[2:]
        return "form"

    def show_typing_error(self, event: Input.Changed) -> None:
        """The changed input's field shows its own error as the user types (and drops it once fixed)."""
        self.show_check(self.field_key(event.input), event.validation_result)

    def step_up_then_save(self, exc: StepUpRequired) -> None:
        """Core wants a TOTP code before this save (nothing was written): ask for one, then save again."""
        from tui.modals.otp import OtpModal

        self.show_error("form", str(exc))
        self.app.push_screen(OtpModal(self.ctx, self.ctx.mfa), lambda ok: self.action_save() if ok else None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Save and Cancel buttons do what their keys do."""
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without saving; when something was typed, ask first (as delete does). While a save is in flight,
        nothing: it may commit still, and the form closes then (or shows why it did not)."""
        if self.saving:
            return
        if self._snapshot() == getattr(self, "_initial", None):
            self.dismiss(None)
            return
        from tui.modals.confirm import ConfirmModal

        self.app.push_screen(ConfirmModal("Discard this form?", "What you typed is not saved.", yes="Discard",
                                          no="Keep editing", danger=True),
                             lambda yes: self.dismiss(None) if yes else None)
