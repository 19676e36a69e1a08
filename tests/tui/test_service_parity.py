"""The same inventory use case from the command line and from the app leaves the same audit rows: both front
ends call core.services.inventory, so the action names, objects, details and their order cannot drift apart.
The app's account flows also check what the vault holds after each step."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input

from core.audit import list_events
from core.config import load_settings
from core.context import Context, open_context
from core.services import inventory as svc
from storage.inventory import account_secrets
from tests.tui.helpers import until
from tui.app import KeyturnApp
from tui.cli import main

SIZE = (100, 32)


def _rows(ctx: Context) -> list[tuple[str, str, str, dict]]:
    return [(e.action, e.object_id, e.actor, e.detail) for e in reversed(list_events(ctx, limit=50))]


ASSET_COMMANDS = [(["asset", "add", "web9", "--address", "10.9.0.9", "--node", "/prod/web", "--comment", "db"], ""),
                  (["asset", "edit", "web9", "--address", "10.9.0.10", "--inactive"], ""),
                  (["asset", "remove", "web9", "--yes"], "")]
# Add an account, give it a new secret and make it privileged with a become password, give it another become
# password alone, clear the become password, make it unprivileged again (its secret kept), remove it.
ACCOUNT_COMMANDS = [(["asset", "add", "web9", "--address", "10.9.0.9"], ""),
                    (["account", "add", "web9", "app", "--password-stdin"], "Pw-one-17\n"),
                    (["account", "add", "web9", "app", "--password-stdin", "--privileged", "--become-password-stdin"],
                     "Pw-two-29\nSudo-pw-41\n"),
                    (["account", "edit", "web9", "app", "--become-password-stdin"], "Sudo-pw-53\n"),
                    (["account", "edit", "web9", "app", "--clear-become-password"], ""),
                    (["account", "edit", "web9", "app", "--no-privileged"], ""),
                    (["account", "remove", "web9", "app", "--yes"], "")]


def _cli_rows(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, settings,  # type: ignore[no-untyped-def]
              commands: list[tuple[list[str], str]] = ASSET_COMMANDS) -> list[tuple]:
    for key, value in keyturn_env.items():
        monkeypatch.setenv(key, value)
    for args, stdin in commands:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert main(args) == 0, args
    ctx = open_context(settings, operator="tester")
    try:
        return _rows(ctx)
    finally:
        ctx.close()


def _app_rows(tmp_path: Path) -> list[tuple]:
    settings = load_settings(env={"KEYTURN_HOME": str(tmp_path / "app-home"),
                                  "KEYTURN_CONFIG": str(tmp_path / "app.toml")})
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="tester", source="pytest")
    app = KeyturnApp(ctx)

    def fill(**values: str) -> None:
        for key, value in values.items():
            app.screen.query_one(f"#{key}", Input).value = value

    async def flow() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i", "n")
            await until(pilot, lambda: app.screen.query("#address"), "the asset form")
            fill(name="web9", address="10.9.0.9", nodes="/prod/web", comment="db")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.screen_stack) == 1 and app.screen.selected_asset() == "web9",
                         "web9 in the table")
            await pilot.press("e")
            await until(pilot, lambda: app.screen.query("#address"), "the edit form")
            fill(address="10.9.0.10")
            await pilot.click("#active")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")
            await pilot.press("d")
            await until(pilot, lambda: len(app.screen_stack) == 2, "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: app.screen.selected_asset() is None, "web9 gone")

    try:
        asyncio.run(flow())
        return _rows(ctx)
    finally:
        ctx.close()


def test_add_edit_remove_an_asset_audits_alike_from_both_front_ends(keyturn_env, monkeypatch, settings,
                                                                    tmp_path) -> None:
    cli = _cli_rows(keyturn_env, monkeypatch, settings)
    app = _app_rows(tmp_path)
    assert [r[0] for r in cli] == ["asset.add", "asset.edit", "asset.remove"]
    assert app == cli
    assert cli[1][3] == {"address": "10.9.0.10", "active": False}


def _app_account_rows(tmp_path: Path) -> list[tuple]:
    settings = load_settings(env={"KEYTURN_HOME": str(tmp_path / "app-home"),
                                  "KEYTURN_CONFIG": str(tmp_path / "app.toml")})
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="tester", source="pytest")
    svc.add_asset(ctx, "web9", address="10.9.0.9")
    app = KeyturnApp(ctx)

    def account():  # type: ignore[no-untyped-def]
        return next(iter(svc.list_accounts(ctx, asset="web9")), None)

    def form_closed() -> bool:
        return len(app.screen_stack) == 1

    def shown(acc) -> bool:  # type: ignore[no-untyped-def]
        """The account's row in the table, as it is now (the table may fill after the form closes)."""
        table = app.screen.query_one("#accounts-table", DataTable)
        cells = [str(c) for c in table.get_row_at(0)] if table.row_count == 1 else []
        return cells[4:6] == [str(acc.version), "yes" if acc.privileged else ""]

    def held(acc) -> tuple[str | None, str | None]:  # type: ignore[no-untyped-def]
        secrets = account_secrets(ctx.db, acc.id)
        return secrets.secret, secrets.become

    async def save(pilot: Pilot, key: str, become_shown: bool, **values: str | bool):  # type: ignore[no-untyped-def]
        """Open the account form with key, fill it (a bool ticks a checkbox), check whether the become password
        field shows, save; the account as saved, once its row shows it."""
        await pilot.press(key)
        await until(pilot, lambda: app.screen.query("#privileged"), "the account form")
        for field, value in values.items():
            if isinstance(value, bool):
                app.screen.query_one(f"#{field}", Checkbox).value = value
            else:
                app.screen.query_one(f"#{field}", Input).value = value
        await until(pilot, lambda: app.screen.query_one("#f-become").display == become_shown, "the become field")
        await pilot.press("ctrl+s")
        await until(pilot, form_closed, "the form to close")
        acc = account()
        assert acc is not None
        await until(pilot, lambda: shown(acc), "the account as saved in its table")
        return acc

    async def flow() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i")
            await until(pilot, lambda: app.screen.selected_asset() == "web9", "web9 in the table")
            # The become password field shows for a privileged account only: only its password is used.
            acc = await save(pilot, "a", False, username="app", password="Pw-one-17")
            assert (acc.username, acc.privileged, acc.version, held(acc)) == ("app", False, 1, ("Pw-one-17", None))
            # A new secret, and privileged with a become password.
            acc = await save(pilot, "c", True, password="Pw-two-29", privileged=True, become="Sudo-pw-41")
            assert (acc.privileged, acc.version, held(acc)) == (True, 2, ("Pw-two-29", "Sudo-pw-41"))
            # The become password alone: the secret and its version stay.
            acc = await save(pilot, "c", True, become="Sudo-pw-53")
            assert (acc.privileged, acc.version, held(acc)) == (True, 2, ("Pw-two-29", "Sudo-pw-53"))
            assert acc.has_become
            # Clearing the become password: the vault no longer holds one; the secret and its version stay.
            acc = await save(pilot, "c", True, clear_become=True)
            assert (acc.privileged, acc.version, held(acc), acc.has_become) == (True, 2, ("Pw-two-29", None), False)
            # The flag only: the password field left empty keeps the secret.
            acc = await save(pilot, "c", False, privileged=False)
            assert (acc.privileged, acc.version, held(acc)[0]) == (False, 2, "Pw-two-29")

            await pilot.press("x")
            await until(pilot, lambda: len(app.screen_stack) == 2, "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: account() is None, "the account gone")

    try:
        asyncio.run(flow())
        return _rows(ctx)
    finally:
        ctx.close()


def test_add_edit_remove_an_account_audits_alike_from_both_front_ends(keyturn_env, monkeypatch, settings,
                                                                      tmp_path) -> None:
    cli = _cli_rows(keyturn_env, monkeypatch, settings, ACCOUNT_COMMANDS)
    app = _app_account_rows(tmp_path)
    assert [r[0] for r in cli] == ["asset.add", "account.add", "account.update", "account.update", "account.update",
                                   "account.update", "account.remove"]
    assert app == cli
    assert cli[2][3] == cli[3][3] == {"secret_type": "password", "privileged": True, "can_change": True}
    assert cli[4][3] == {"secret_type": "password", "privileged": True, "can_change": True, "become": "cleared"}
    assert cli[5][3] == {"secret_type": "password", "privileged": False, "can_change": True}
    assert "Pw-" not in repr(cli) and "Sudo-" not in repr(cli)
