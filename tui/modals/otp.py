"""Ask for a TOTP code: OtpModal(ctx, mfa_session) dismisses True once the operator is unlocked, else False."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from core.context import Context
from core.errors import KeyturnError
from core.mfa import MfaFailed, MfaLocked, MfaSession, MfaStatus, mfa_status
from core.errors import NotFound
from tui.reads import read_off_ui
from tui.writes import write_in_thread


class OtpModal(ModalScreen[bool]):
    """One code unlocks the operator for this app session; wrong codes show the tries left, then the lockout."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    checking = False  # a code is being checked

    def __init__(self, ctx: Context, mfa: MfaSession, operator: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.mfa = mfa
        self.operator = operator or ctx.operator or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"TOTP code for {self.operator or 'operator'}", classes="dialog-title")
            yield Label("", id="otp-status", markup=False)
            yield Input(placeholder="6-digit code", max_length=7, restrict=r"[0-9 ]*", id="otp-code")
            yield Label("", classes="field-error", id="otp-error", markup=False)
            yield Label("Enter check · Esc cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        """Skip the question when already unlocked; otherwise say how many tries are left."""
        if self.mfa.unlocked(self.operator):
            # Not dismiss directly: a screen cannot await its own dismissal from its handlers.
            self.call_after_refresh(self._already_unlocked)
            return
        self._show_status()
        self.query_one("#otp-code", Input).focus()

    def _already_unlocked(self) -> None:
        self.dismiss(True)

    def _show_status(self) -> None:
        """Read the operator's tries and lockout (in a thread worker: the UI thread never waits on the database)."""
        ctx, operator, now = self.ctx, self.operator, self.mfa.now()

        def fetch() -> MfaStatus | None:
            try:
                return mfa_status(ctx, operator, now=now)
            except NotFound:
                return None

        read_off_ui(self, "Reading the TOTP status", fetch, self._apply_status)

    def _apply_status(self, st: "MfaStatus | None") -> None:
        if not self.is_attached:
            return  # closed meanwhile
        status = self.query_one("#otp-status", Label)
        if st is None:
            status.update(f"{self.operator!r} is not a keyturn operator")
            self._disable()
        elif not st.confirmed:
            status.update(f"{self.operator} has not confirmed the TOTP enrolment yet")
            self._disable()
        elif st.locked_until is not None:
            status.update(f"locked out until {st.locked_until:%H:%M:%S} UTC after too many wrong codes")
            self._disable()
        else:
            status.update(f"{st.remaining} tr{'y' if st.remaining == 1 else 'ies'} before a lockout; "
                          f"an unlock lasts {int(self.mfa.unlock_seconds // 60)} min")

    def _disable(self) -> None:
        self.query_one("#otp-code", Input).disabled = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Check the code (in a thread worker: a check writes the tries and the code's time step); the input is
        cleared after a wrong one. A second Enter while a check is in flight is ignored."""
        event.stop()
        if self.checking:
            return
        self.checking = True
        ctx, mfa, code, operator = self.ctx, self.mfa, event.value, self.operator
        write_in_thread(self, "Checking the TOTP code", lambda: mfa.unlock(ctx, code, operator), self._checked,
                        failed=self._refused, shows=(KeyturnError,))

    def _checked(self, _: object) -> None:
        self.checking = False
        self.dismiss(True)

    def _refused(self, exc: Exception) -> None:
        """A wrong code, a lockout, or an audit trail that cannot be written: say why here."""
        self.checking = False
        code_input = self.query_one("#otp-code", Input)
        error = self.query_one("#otp-error", Label)
        if isinstance(exc, MfaLocked):
            error.update(str(exc))
            self._show_status()
            self._disable()
        elif isinstance(exc, MfaFailed):
            error.update(str(exc))
            code_input.value = ""
            self._show_status()
        elif isinstance(exc, KeyturnError):  # the audit trail could not be written: refused, say why
            error.update(str(exc))
            code_input.value = ""

    def action_cancel(self) -> None:
        """Close without unlocking (not while a code is being checked: it may unlock still)."""
        if not self.checking:
            self.dismiss(False)
