"""Add or edit one account of an asset: AccountFormModal(ctx, asset, account_or_None) saves through
core.services.inventory and dismisses with (user name, core's outcome: 'created', 'updated' or 'unchanged').

The secret and the become (sudo) password are typed into masked fields only and never shown; a private key comes
from a file, as on the command line (a pasted key would sit on the screen in clear).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Checkbox, Input, Label, Select

from core.context import Context
from core.errors import InputError
from core.names import check_username
from core.services import inventory as svc
from core.types import AccountInfo
from tui.modals.form import FormModal
from tui.widgets.compact import make_compact
from tui.widgets.marked import MarkedCheckbox
from tui.widgets.validators import CoreCheck

SECRET_TYPES = [("password", "password"), ("SSH key", "ssh_key")]
FIELDS = ("username", "secret_type", "password", "key_file", "passphrase", "become")  # each has its own error line


class AccountFormModal(FormModal[tuple[str, str] | None]):
    """User name, secret type, the secret (password, or key file and passphrase), privileged with its become
    (sudo) password (on an edit, a box clears a stored one), and changeable."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, ctx: Context, asset: str, account: AccountInfo | None) -> None:
        super().__init__()
        self.ctx = ctx
        self.asset = asset
        self.account = account

    def compose(self) -> ComposeResult:
        a = self.account
        title = f"Edit account {a.username}@{self.asset}" if a else f"New account on {self.asset}"
        keep = " (empty: keep the current one)" if a else ""
        with Vertical(classes="dialog form", id="account-dialog"):
            yield Label(title, markup=False, classes="dialog-title")
            with VerticalScroll(id="form-body"):
                for key, caption, widget in (
                    ("username", "User name", Input(a.username if a else "", id="username", disabled=a is not None,
                                                    validators=[CoreCheck(check_username)])),
                    ("secret_type", "Secret type", Select(SECRET_TYPES, value=a.secret_type if a else "password",
                                                          allow_blank=False, id="secret_type", disabled=a is not None)),
                    ("password", f"Password{keep}", Input(password=True, id="password")),
                    ("key_file", f"Private key file{keep}", Input(id="key_file", placeholder="~/.ssh/id_ed25519")),
                    ("passphrase", "Key passphrase (empty when the key is not encrypted)",
                     Input(password=True, id="passphrase")),
                ):
                    yield self.field_group(key, caption, widget)
                yield MarkedCheckbox("privileged: keyturn logs in with it to change other accounts",
                                     a.privileged if a else False, id="privileged")
                # Only a privileged account's become password is used (sudo on the accounts it changes).
                yield self.field_group("become", f"Become (sudo) password{keep or ' (if sudo asks for one)'}",
                                       Input(password=True, id="become"))
                if a is not None and a.has_become:  # never shows the password: only that one is stored
                    yield MarkedCheckbox("clear the stored sudo password", False, id="clear_become")
                yield MarkedCheckbox("keyturn may change its secret", a.can_change if a else True, id="can_change")
            yield Label("", markup=False, id="err-form", classes="field-error")
            yield self.buttons()

    def on_mount(self) -> None:
        """Compact fields, show the secret fields of the type, focus the first editable field."""
        make_compact(self)
        self._show_secret_fields(self._secret_type())
        self.query_one("#f-become").display = self.query_one("#privileged", Checkbox).value
        self.set_focus(self.query_one("#password" if self.account and self._secret_type() == "password"
                                      else "#key_file" if self.account else "#username", Input))
        self._initial = self._snapshot()

    def _secret_type(self) -> str:
        return str(self.query_one("#secret_type", Select).value)

    def _show_secret_fields(self, secret_type: str) -> None:
        """A password for a password account, a key file and its passphrase for a key account."""
        self.query_one("#f-password").display = secret_type == "password"
        self.query_one("#f-key_file").display = secret_type == "ssh_key"
        self.query_one("#f-passphrase").display = secret_type == "ssh_key"

    def on_select_changed(self, event: Select.Changed) -> None:
        """Another secret type shows its fields."""
        if event.select.id == "secret_type" and self.is_mounted:
            self._show_secret_fields(str(event.value))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """A privileged account shows its become password field."""
        if event.checkbox.id == "privileged":
            self.query_one("#f-become").display = event.value

    def on_input_changed(self, event: Input.Changed) -> None:
        """Each field shows its own error as the user types."""
        self.show_typing_error(event)

    def _read_key(self, path: str) -> str:
        """The private key file's text; InputError on the key file field when it cannot be read."""
        try:
            return Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not text"
            raise InputError(f"key file {path}: cannot read it ({reason})", field="key_file") from None

    def action_save(self) -> None:
        """Check all fields, then save through core in a thread worker; on a step-up, ask for a TOTP code and save
        again."""
        if self.saving:
            return
        for label in self.query(".field-error"):
            label.display = False
        username = self.query_one("#username", Input)
        if not self.show_check("username", username.validate(username.value)):
            self.show_error("form", "fix the fields above; nothing saved")
            self._focus_field(username)
            return
        secret_type = self._secret_type()
        privileged = self.query_one("#privileged", Checkbox).value
        can_change = self.query_one("#can_change", Checkbox).value
        key_path = self.query_one("#key_file", Input).value.strip()
        key_label = f"key file {key_path}"
        become = self.query_one("#become", Input).value if privileged else ""
        clear_become = any(box.value for box in self.query("#clear_become").results(Checkbox))
        try:
            passphrase: str | None = None
            if secret_type == "password":
                secret = self.query_one("#password", Input).value
            else:
                passphrase = self.query_one("#passphrase", Input).value or None
                if key_path:
                    secret = self._read_key(key_path)
                elif self.account is None:
                    raise InputError("key file: is empty", field="key_file")
                elif passphrase:  # a passphrase alone would be dropped without a word
                    raise InputError("key file: give the key this passphrase opens", field="key_file")
                else:
                    secret = ""  # keep the current key
        except InputError as exc:
            self.field_failed(exc)
            return
        ctx, asset, account, name = self.ctx, self.asset, self.account, username.value

        # A step-up (StepUpRequired) comes for a privileged account: it opens every other account of the asset.
        def write() -> str:
            if account is None:
                return svc.add_account(ctx, asset, name, secret_type=secret_type, secret=secret, passphrase=passphrase,
                                       become=become or None, privileged=privileged, can_change=can_change,
                                       key_label=key_label)
            return svc.edit_account(ctx, asset, account.username, account.secret_type, privileged=privileged,
                                    can_change=can_change, secret=secret or None, passphrase=passphrase,
                                    become=become or None, key_label=key_label, clear_become=clear_become)

        self.save_in_thread(f"Saving account {name.strip()}@{asset}", write,
                            lambda outcome: self.dismiss((name.strip(), outcome)))

    def field_failed(self, exc: Exception) -> None:
        """Core's error on its field's line (and "nothing saved" on the form's), with the focus on that field."""
        key = self._field_of(exc, self._secret_type())
        self.show_error(key, str(exc))
        if key != "form":
            self.show_error("form", "nothing saved")
            self._focus_field(self.query_one(f"#{key}", Input))

    def _field_of(self, exc: Exception, secret_type: str) -> str:
        """The field an error from core is about: core's 'secret' is the password or the key file here."""
        field = getattr(exc, "field", None)
        if field == "secret":
            return "password" if secret_type == "password" else "key_file"
        if field in ("username", "key_file", "passphrase", "become"):
            return str(field)
        return "form"

    def _snapshot(self) -> tuple:
        return (tuple(w.value for w in self.query(Input)), self._secret_type(),
                tuple(w.value for w in self.query(Checkbox)))
