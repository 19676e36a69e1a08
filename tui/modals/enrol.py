"""Enrol a phone: EnrolModal(ctx, enrolment) shows the QR code and dismisses True once a code confirms it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from core.context import Context
from core.errors import KeyturnError
from core.operators import Enrolment, confirm_enrolment
from core.errors import NotFound
from tui.writes import write_in_thread


class EnrolModal(ModalScreen[bool]):
    """The otpauth QR code (light modules filled, so it reads dark-on-light) and an input for the first code."""

    BINDINGS = [Binding("escape", "cancel", "Later")]
    confirming = False  # a code is being checked

    def __init__(self, ctx: Context, enrolment: Enrolment) -> None:
        super().__init__()
        self.ctx = ctx
        self.enrolment = enrolment

    def __repr__(self) -> str:
        return f"EnrolModal({self.enrolment.operator!r})"

    def compose(self) -> ComposeResult:
        # The code is about 45x23 cells with its quiet zone: beside the form (not above it) it fits 80x24
        # whole, which a phone camera needs.
        with Horizontal(id="enrol-box"):
            yield Static(self.enrolment.qr, id="enrol-qr", markup=False)
            with VerticalScroll(id="enrol-side"):
                yield Label(f"Enrol {self.enrolment.operator}", classes="dialog-title", markup=False)
                yield Static("Scan the code with an authenticator app, then type the 6-digit code it shows.")
                yield Input(placeholder="6-digit code", max_length=7, restrict=r"[0-9 ]*", id="enrol-code")
                yield Label("", classes="field-error", id="enrol-error", markup=False)
                yield Static("Enter confirm · Esc later (`keyturn operator confirm` works too)", classes="dialog-hint",
                             markup=False)
                yield Static(f"No camera? Enter this URI: {self.enrolment.uri}", id="enrol-uri", markup=False)

    def on_mount(self) -> None:
        """The code input has the focus."""
        self.query_one("#enrol-code", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Confirm the enrolment with the code (in a thread worker; a second Enter meanwhile is ignored)."""
        event.stop()
        if self.confirming:
            return
        self.confirming = True
        ctx, operator, code = self.ctx, self.enrolment.operator, event.value
        write_in_thread(self, f"Confirming the enrolment of {operator}", lambda: confirm_enrolment(ctx, operator, code),
                        self._confirmed, failed=self._refused, shows=(KeyturnError, NotFound))

    def _confirmed(self, _: object) -> None:
        self.confirming = False
        self.dismiss(True)

    def _refused(self, exc: Exception) -> None:
        self.confirming = False
        if isinstance(exc, (KeyturnError, NotFound)):
            self.query_one("#enrol-error", Label).update(str(exc))
            self.query_one("#enrol-code", Input).value = ""

    def action_cancel(self) -> None:
        """Close unconfirmed; the operator cannot reveal until confirmed (not while a code is being checked)."""
        if not self.confirming:
            self.dismiss(False)
