"""One line of input in a modal (a new task name, a file path): PromptModal dismisses with the text or None.

With save, the text goes through that write (in a thread worker, tui/writes.py) before the prompt closes; a
refusal stays on the prompt's error line, so the person can correct what they typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Input, Label

from core.errors import KeyturnError
from tui.writes import write_in_thread


class PromptModal(ModalScreen[str | None]):
    """Ask for one value; Enter accepts when the validators pass, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    saving = False  # the text is going through save

    def __init__(self, title: str, *, placeholder: str = "", value: str = "",
                 validators: Sequence[Validator] = (), check: Callable[[str], str | None] | None = None,
                 save: Callable[[str], Any] | None = None) -> None:
        super().__init__()
        self.save = save  # a write the accepted text goes through (a thread worker) before the prompt closes
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
        text, save = event.value.strip(), self.save
        if save is None:
            self.dismiss(text)
        elif not self.saving:
            self.saving = True
            write_in_thread(self, self.title_text, lambda: save(text), lambda _: self._saved(text), failed=self._refused,
                            shows=(KeyturnError, ValueError))

    def _saved(self, text: str) -> None:
        self.saving = False
        self.dismiss(text)

    def _refused(self, exc: Exception) -> None:
        """Core's refusal on the error line (the text can be corrected); anything else the App shows."""
        self.saving = False
        if isinstance(exc, (KeyturnError, ValueError)):
            self.query_one("#prompt-error", Label).update(str(exc))

    def action_cancel(self) -> None:
        """Close without a value (not while the text is being saved: it may commit still)."""
        if not self.saving:
            self.dismiss(None)
