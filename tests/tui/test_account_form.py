"""The account form in Inventory: secrets typed into masked fields and never shown, errors named by field with
the focus on the first one, SSH keys from a file, and a TOTP step-up before changing a privileged account."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, Label, Select

from core import operators as ops
from core.audit import list_events
from core.mfa import code_at
from core.services import inventory as svc
from storage.inventory import account_secrets, upsert_account, upsert_asset
from tests.tui.helpers import toasts, until
from tests.tui.test_reveal import screen_text, sync
from tui.app import KeyturnApp
from tui.modals.account_form import AccountFormModal
from tui.modals.otp import OtpModal

SIZE = (100, 32)
TYPED = "Kq7TypedVaultPw93"
OLD = "Old4StoredPw71"


def _app(ctx) -> KeyturnApp:  # type: ignore[no-untyped-def]
    ctx.settings.reconcile_on_start = False
    return KeyturnApp(ctx)


def _error(app: App, key: str) -> str:
    label = app.screen.query_one(f"#err-{key}", Label)
    return str(label.render()) if label.display else ""


def _focused(app: App) -> str | None:
    return getattr(app.screen.focused, "id", None)


async def _open_form(pilot: Pilot, key: str, field: str) -> None:
    app = pilot.app
    await pilot.press("i")
    await until(pilot, lambda: getattr(app.screen, "selected_asset", lambda: None)() == "web1", "web1 selected")
    if key != "a":
        await _accounts_shown(pilot)
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, AccountFormModal) and _focused(app) == field, "the account form")


async def _accounts_shown(pilot: Pilot, count: int = 1) -> None:
    """Wait for the highlighted asset's accounts in their table (they may load after the asset is highlighted)."""
    app = pilot.app
    await until(pilot, lambda: app.screen.query_one("#accounts-table", DataTable).row_count == count, "the accounts")


def _events_text(ctx) -> str:  # type: ignore[no-untyped-def]
    return repr([(e.action, e.object_id, e.detail) for e in list_events(ctx, limit=50)])


@sync
async def test_a_typed_secret_is_masked_and_never_shown_nor_audited(ctx) -> None:
    svc.add_asset(ctx, "web1", address="10.0.0.1")
    app = _app(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await _open_form(pilot, "a", "username")
        # One burst, as keys arrive over a laggy link: Tab past the secret type lands the rest in the password.
        await pilot.press(*"app", "tab", "tab", *TYPED)
        await until(pilot, lambda: app.screen.query_one("#password", Input).value == TYPED, "the typed password")
        assert app.screen.query_one("#username", Input).value == "app"
        text = screen_text(app)
        assert TYPED not in text and "•" * 5 in text
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, AccountFormModal), "the form to close")
        assert "Account app@web1 created" in toasts(app)
        assert TYPED not in screen_text(app) and not any(TYPED in t for t in toasts(app))

        # The edit form never holds the current secret: its password field starts empty.
        await _accounts_shown(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, AccountFormModal), "the edit form")
        assert app.screen.query_one("#password", Input).value == ""
        assert app.screen.query_one("#username", Input).disabled
        assert TYPED not in screen_text(app)
    [acc] = svc.list_accounts(ctx, asset="web1")
    assert (acc.username, acc.secret_type, acc.privileged, acc.can_change) == ("app", "password", False, True)
    assert account_secrets(ctx.db, acc.id).secret == TYPED
    assert "account.add" in _events_text(ctx) and TYPED not in _events_text(ctx)


@sync
async def test_errors_name_their_field_as_the_cli_does_and_take_the_focus(ctx, tmp_path: Path) -> None:
    svc.add_asset(ctx, "web1", address="10.0.0.1")
    app = _app(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await _open_form(pilot, "a", "username")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: _error(app, "username"), "the user name's error")
        assert _error(app, "username") == "username: is empty"  # the CLI's words: "error: username: is empty"
        assert _focused(app) == "username"

        await pilot.press(*"app", "ctrl+s")
        await until(pilot, lambda: _error(app, "password"), "the password's error")
        assert _error(app, "password") == "password: is empty" and _focused(app) == "password"
        assert _error(app, "username") == "" and "nothing saved" in _error(app, "form")

        app.screen.query_one("#secret_type", Select).value = "ssh_key"
        await until(pilot, lambda: app.screen.query_one("#f-key_file").display, "the key file field")
        assert not app.screen.query_one("#f-password").display
        app.screen.set_focus(app.screen.query_one("#username", Input))
        missing = tmp_path / "no-such-key"
        app.screen.query_one("#key_file", Input).value = str(missing)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: _error(app, "key_file"), "the key file's error")
        assert _error(app, "key_file") == f"key file {missing}: cannot read it (No such file or directory)"
        assert _focused(app) == "key_file"

        garbage = tmp_path / "not-a-key"
        garbage.write_text("hello\n")
        app.screen.query_one("#key_file", Input).value = str(garbage)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "not a readable private key" in _error(app, "key_file"), "the key's error")
        assert _error(app, "key_file") == f"key file {garbage} is not a readable private key (OpenSSH or PEM)"
    assert svc.list_accounts(ctx, asset="web1") == []
    assert "account." not in _events_text(ctx)


@sync
async def test_an_ssh_key_account_from_a_key_file(ctx, tmp_path: Path) -> None:
    svc.add_asset(ctx, "web1", address="10.0.0.1")
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"Pass-phrase-5")).decode()
    path = tmp_path / "id_ed25519"
    path.write_text(key)
    app = _app(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await _open_form(pilot, "a", "username")
        app.screen.query_one("#username", Input).value = "deploy"
        app.screen.query_one("#secret_type", Select).value = "ssh_key"
        app.screen.query_one("#key_file", Input).value = str(path)
        app.screen.query_one("#passphrase", Input).value = "Pass-phrase-5"
        app.screen.query_one("#privileged", Checkbox).value = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, AccountFormModal), "the form to close")
        assert "BEGIN OPENSSH" not in screen_text(app) and "Pass-phrase-5" not in screen_text(app)

        await _accounts_shown(pilot)
        await pilot.press("c")  # a passphrase without the key it opens is refused, not dropped
        await until(pilot, lambda: _focused(app) == "key_file", "the edit form on the key file")
        app.screen.query_one("#passphrase", Input).value = "Other-phrase"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: _error(app, "key_file"), "the key file's error")
        assert _error(app, "key_file") == "key file: give the key this passphrase opens"
    [acc] = svc.list_accounts(ctx, asset="web1")
    assert (acc.username, acc.secret_type, acc.privileged) == ("deploy", "ssh_key", True)
    secrets = account_secrets(ctx.db, acc.id)
    assert (secrets.secret, secrets.passphrase) == (key, "Pass-phrase-5")
    assert "Pass-phrase-5" not in _events_text(ctx) and "OPENSSH" not in _events_text(ctx)


def _enrol_alice(ctx) -> str:  # type: ignore[no-untyped-def]
    """A confirmed operator alice acting: changing a privileged account needs her fresh TOTP code."""
    ctx.operator = "alice"
    ops.add_operator(ctx, "alice", "alice@example.org")
    secret = parse_qs(urlparse(ops.start_enrolment(ctx, "alice").uri).query)["secret"][0]
    earlier = datetime.now(timezone.utc) - timedelta(seconds=90)
    ops.confirm_enrolment(ctx, "alice", code_at(secret, earlier), now=earlier)
    return secret


@sync
async def test_changing_a_privileged_account_asks_for_a_code_then_saves(ctx) -> None:
    totp = _enrol_alice(ctx)
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1")
        upsert_account(ctx.db, s, asset, "root", secret=OLD, privileged=True)
    app = _app(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await _open_form(pilot, "c", "password")
        app.screen.query_one("#privileged", Checkbox).value = False
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, OtpModal), "the TOTP prompt")
        await pilot.press(*code_at(totp, datetime.now(timezone.utc)), "enter")
        await until(pilot, lambda: not isinstance(app.screen, (OtpModal, AccountFormModal)), "the form saved")
        assert "Account root@web1 updated" in toasts(app)
    [acc] = svc.list_accounts(ctx, asset="web1")
    assert not acc.privileged and account_secrets(ctx.db, acc.id).secret == OLD
    [event] = list_events(ctx, action="account.update")
    assert event.actor == "alice" and event.detail == {"secret_type": "password", "privileged": False,
                                                       "can_change": True}


@sync
async def test_removing_an_account_asks_first(ctx) -> None:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1")
        upsert_account(ctx.db, s, asset, "app", secret=OLD)
    app = _app(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: getattr(app.screen, "selected_asset", lambda: None)() == "web1", "web1 selected")
        await _accounts_shown(pilot)
        await pilot.press("x")
        await until(pilot, lambda: "Remove account app@web1?" in screen_text(app), "the confirmation")
        assert "password (version 1)" in screen_text(app)
        await pilot.press("n")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the confirmation closed")
        assert [a.username for a in svc.list_accounts(ctx, asset="web1")] == ["app"]
        await pilot.press("x")
        await until(pilot, lambda: len(app.screen_stack) == 2, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not svc.list_accounts(ctx, asset="web1"), "the account removed")
        await until(pilot, lambda: "Account app@web1 removed" in toasts(app), "the toast")
    [event] = list_events(ctx, action="account.remove")
    assert event.object_id == "app@web1" and event.detail == {"secret_type": "password", "version": 1}
