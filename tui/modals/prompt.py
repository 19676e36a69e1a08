"""One line of input in a modal (a new task name, a file path): PromptModal dismisses with the text or None."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Input, Label


class PromptModal(ModalScreen[str | None]):
    """Ask for one value; Enter accepts when the validators pass, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, placeholder: str = "", value: str = "",
                 validators: Sequence[Validator] = (), check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.validators = list(validators)
        self.check = check  # extra check returning an error message (e.g. 'a task named x exists')

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Input(value=self.value, placeholder=self.placeholder, validators=self.validators,
                        validate_on=["changed", "submitted"], id="prompt-input")
            yield Label("", markup=False, classes="field-error", id="prompt-error")
            yield Label("Enter accept · Esc cancel", classes="dialog-hint")

    def on_input_changed(self, event: Input.Changed) -> None:
        """Clear the error once the user types again."""
        self.query_one("#prompt-error", Label).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Accept when valid, else show why on the error line."""
        event.stop()
        error = ""
        if event.validation_result is not None and not event.validation_result.is_valid:
            error = "; ".join(event.validation_result.failure_descriptions)
        elif self.check is not None:
            error = self.check(event.value.strip()) or ""
        if error:
            self.query_one("#prompt-error", Label).update(error)
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        """Close without a value."""
        self.dismiss(None)
