"""The app asks for the TOTP step-up that core's use cases demand (issues 10/11), as the command line does.

Import (f) and trust (k) on the Inventory screen: core reads the file / fetches the host's keys, refuses to write
without a fresh code (StepUpRequired), the app shows the OTP modal, and with alice's code does it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input

from core.config import Settings
from core.context import Context, open_context
from core.mfa import code_at
from core.services import inventory as svc
from storage.inventory import get_asset, upsert_asset
from storage.tables import utcnow
from tests.tui.helpers import sync, toasts, until
from tests.unit.test_step_up_use_cases import KeyServer, enrol, key_server  # noqa: F401 - fixture used by name
from tui.app import KeyturnApp
from tui.modals.confirm import ConfirmModal
from tui.modals.otp import OtpModal

SIZE = (100, 30)


@pytest.fixture
def alice_ctx(settings: Settings) -> Iterator[tuple[Context, str]]:
    """A vault where alice is an enforced operator (with her TOTP secret), acting as alice."""
    settings.reconcile_on_start = False
    ctx = open_context(settings, operator="alice", source="pytest")
    secret = enrol(ctx)
    try:
        yield ctx, secret
    finally:
        ctx.close()


async def _give_code(app: KeyturnApp, pilot, secret: str) -> None:  # type: ignore[no-untyped-def]
    await until(pilot, lambda: isinstance(app.screen, OtpModal) and app.screen.query("#otp-code"), "the OTP modal")
    app.screen.query_one("#otp-code", Input).value = code_at(secret, utcnow())
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, OtpModal), "the OTP modal to close")


@sync
async def test_importing_in_the_app_asks_for_a_code_then_imports(alice_ctx, tmp_path: Path) -> None:
    ctx, secret = alice_ctx
    hosts = tmp_path / "hosts"
    hosts.write_text("[web]\nweb9 ansible_host=192.0.2.9\n")
    app = KeyturnApp(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i", "f")
        await until(pilot, lambda: app.screen.query("#prompt-input"), "the path prompt")
        app.screen.query_one("#prompt-input", Input).value = str(hosts)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OtpModal), "the OTP modal")
        assert svc.list_assets(ctx) == []  # read and checked, not written
        assert any("importing an inventory" in t for t in toasts(app))
        await _give_code(app, pilot, secret)
        await until(pilot, lambda: [a.name for a in svc.list_assets(ctx)] == ["web9"], "the import")


@sync
async def test_trusting_a_host_key_in_the_app_asks_for_a_code_then_pins(alice_ctx, key_server: KeyServer) -> None:
    ctx, secret = alice_ctx
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="127.0.0.1", port=key_server.port)
    app = KeyturnApp(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: getattr(app.screen, "selected_asset", lambda: None)() == "web1", "the asset")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, OtpModal), "the OTP modal")
        await until(pilot, lambda: any("trusting a host key" in t for t in toasts(app)), "the step-up's reason")
        await _give_code(app, pilot, secret)
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the fingerprints to confirm")
        await pilot.press("y")
        await until(pilot, lambda: len(get_asset(ctx.db, "web1").host_keys) == 1, "the pinned key")


@sync
async def test_moving_an_asset_in_the_form_asks_for_a_code_a_comment_does_not(alice_ctx) -> None:
    from tui.modals.asset_form import AssetFormModal

    ctx, secret = alice_ctx
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="192.0.2.1")
    app = KeyturnApp(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: getattr(app.screen, "selected_asset", lambda: None)() == "web1", "the asset")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, AssetFormModal), "the form")
        app.screen.query_one("#comment", Input).value = "rack 4"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: get_asset(ctx.db, "web1").comment == "rack 4", "the comment saved without a code")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, AssetFormModal), "the form")
        form = app.screen
        form.query_one("#address", Input).value = "203.0.113.6"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, OtpModal), "the OTP modal")
        assert get_asset(ctx.db, "web1").address == "192.0.2.1"
        await _give_code(app, pilot, secret)
        await until(pilot, lambda: get_asset(ctx.db, "web1").address == "203.0.113.6", "the new address")
        assert not form.is_attached  # saved and closed


@sync
async def test_a_run_started_in_the_app_asks_for_a_code_then_starts_again(alice_ctx) -> None:
    """Core refuses the run before anything is written; the app asks for the code and starts it once more."""
    from datetime import timedelta

    from core import tasks
    from core.mfa import MfaSession
    from storage.queries import list_executions
    from storage.types import TaskSpec

    ctx, secret = alice_ctx
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="192.0.2.1")  # no account app: the run has nothing to change
    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa._until["alice"] = ctx.mfa.now() + timedelta(minutes=5)
    tasks.create_task(ctx, TaskSpec(name="t1", usernames=["app"], assets=["web1"]))
    app = KeyturnApp(ctx)  # a new app: no unlock yet
    async with app.run_test(size=SIZE) as pilot:
        app.start_run("t1")
        await until(pilot, lambda: isinstance(app.screen, OtpModal), "the OTP modal")
        assert list_executions(ctx.db) == []
        first = list(app.runs.values())[0]
        assert first.status == "cancelled" and first.execution_id is None
        await _give_code(app, pilot, secret)
        await until(pilot, lambda: len(app.runs) == 2 and list(app.runs.values())[1].finished, "the run")
        assert len(list_executions(ctx.db)) == 1
