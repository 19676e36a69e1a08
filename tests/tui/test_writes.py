"""Issue 12, writes off the UI thread too: a form's save, a removal after its confirmation and the other writes
run their core use case in a thread worker; the form closes (or the toast and reload come) once it committed, a
failure shows in the words the CLI prints, and a second save while one is in flight starts no second write.

The core use cases are wrapped, not replaced: the wrapper notes the thread it ran on, may hold the write until
the test lets it go, and calls the real function on the test's database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from textual.app import App
from textual.widgets import Input, Label

from core.audit import list_events
from core.errors import PermissionDenied
from core.services import inventory as svc
from tests.tui.helpers import settled, sync, toasts, until, written
from tui.app import KeyturnApp
from tui.modals.asset_form import AssetFormModal
from tui.modals.confirm import ConfirmModal

SIZE = (100, 32)


class Held:
    """A wrapped core use case: each call notes its thread, then waits until released (at once when not held)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, *, hold: bool = False,
                 error: BaseException | None = None) -> None:
        self.threads: list[threading.Thread] = []
        self.error = error  # raised instead of calling core, while set
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = getattr(svc, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            self.threads.append(threading.current_thread())
            self.entered.set()
            assert self.release.wait(30), "the test never released the write"
            if self.error is not None:
                raise self.error
            return real(*args, **kwargs)

        monkeypatch.setattr(svc, name, wrapper)

    def off_the_ui_thread(self) -> bool:
        """Called, and never on the UI (main) thread."""
        return bool(self.threads) and all(t is not threading.main_thread() for t in self.threads)


@pytest.fixture
def app(ctx) -> Iterator[KeyturnApp]:  # type: ignore[no-untyped-def]
    ctx.settings.reconcile_on_start = False
    svc.add_asset(ctx, "web1", address="10.0.0.1")
    yield KeyturnApp(ctx)


def _error(app: App, key: str) -> str:
    label = app.screen.query_one(f"#err-{key}", Label)
    return str(label.render()) if label.display else ""


async def _new_asset_form(pilot, name: str) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await pilot.press("i")
    await settled(pilot)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, AssetFormModal), "the asset form")
    app.screen.query_one("#name", Input).value = name
    app.screen.query_one("#address", Input).value = "10.0.0.2"
    app.screen.set_focus(app.screen.query_one("#name", Input))
    await pilot.pause()


def _adds(ctx) -> int:  # type: ignore[no-untyped-def]
    return sum(e.action == "asset.add" for e in list_events(ctx, limit=50))


@sync
async def test_a_save_runs_off_the_ui_thread_which_keeps_handling_keys(app: KeyturnApp, ctx,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    add = Held(monkeypatch, "add_asset", hold=True)
    async with app.run_test(size=SIZE) as pilot:
        try:
            await _new_asset_form(pilot, "web2")
            await pilot.press("ctrl+s")
            await until(pilot, add.entered.is_set, "the save to reach core")
            # The write is held in core; the UI thread still takes keys: Tab moves the focus to the next field.
            await pilot.press("tab")
            await until(pilot, lambda: getattr(app.screen.focused, "id", None) == "address", "the focus to move")
            # Esc while the save is in flight neither closes the form nor asks to discard it: the save decides.
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, AssetFormModal) and len(app.screen_stack) == 2
            assert svc.list_assets(ctx, search="web2") == []  # not committed yet: the form waits for it
        finally:
            add.release.set()
        await until(pilot, lambda: not isinstance(app.screen, AssetFormModal), "the form to close once saved")
        await settled(pilot)
        assert "Asset web2 saved; pin its host key with k" in toasts(app)
        assert "web2" in app.screen.query_one("#assets-table").rows  # type: ignore[attr-defined]
    assert add.off_the_ui_thread() and len(add.threads) == 1
    assert [a.name for a in svc.list_assets(ctx, search="web2")] == ["web2"]


@sync
async def test_a_double_enter_on_save_saves_once(app: KeyturnApp, ctx,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    add = Held(monkeypatch, "add_asset", hold=True)
    async with app.run_test(size=SIZE) as pilot:
        try:
            await _new_asset_form(pilot, "web2")
            app.screen.set_focus(app.screen.query_one("#save"))
            await pilot.press("enter")
            await until(pilot, add.entered.is_set, "the save to reach core")
            await pilot.press("enter", "ctrl+s")  # the button again, and the key: both while the first is in flight
            await pilot.pause()
        finally:
            add.release.set()
        await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")
        await settled(pilot)
    assert len(add.threads) == 1 and _adds(ctx) == 2  # web1 from the fixture, web2 once


@sync
async def test_a_failing_save_shows_cores_error_on_its_field_and_keeps_the_form(app: KeyturnApp, ctx,  # type: ignore[no-untyped-def]
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    add = Held(monkeypatch, "add_asset")
    async with app.run_test(size=SIZE) as pilot:
        await _new_asset_form(pilot, "web1")  # exists: core refuses it, as `keyturn asset add web1` is refused
        app.screen.set_focus(app.screen.query_one("#address", Input))
        await pilot.press("ctrl+s")
        await settled(pilot)
        assert isinstance(app.screen, AssetFormModal)
        # The CLI prints "keyturn: error: name: asset 'web1' already exists".
        assert _error(app, "name") == "name: asset 'web1' already exists"
        assert getattr(app.screen.focused, "id", None) == "name"  # the focus on the first field in error
        assert add.off_the_ui_thread()

        # Fixed, it saves: the failed save left nothing half done.
        app.screen.query_one("#name", Input).value = "web3"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")
        await settled(pilot)
        assert "Asset web3 saved; pin its host key with k" in toasts(app)
    assert _adds(ctx) == 2


@sync
async def test_an_unexpected_failure_of_a_save_is_shown_not_swallowed(app: KeyturnApp,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    Held(monkeypatch, "add_asset", error=RuntimeError("disk on fire"))
    async with app.run_test(size=SIZE) as pilot:
        await _new_asset_form(pilot, "web2")
        await pilot.press("ctrl+s")
        await settled(pilot)
        assert "RuntimeError: disk on fire" in toasts(app)  # the App's worker handler, as for any worker
        assert isinstance(app.screen, AssetFormModal)
        # The form is not stuck "saving": Esc works again (it asks, as something was typed).
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the discard question")


@sync
async def test_a_removal_runs_off_the_ui_thread_and_its_refusal_is_shown(app: KeyturnApp, ctx,  # type: ignore[no-untyped-def]
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    remove = Held(monkeypatch, "remove_asset", error=PermissionDenied("'tester' may not edit"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await settled(pilot)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await settled(pilot)
        assert remove.off_the_ui_thread()
        assert "'tester' may not edit" in toasts(app)  # the words `keyturn asset remove` prints after "error: "
        assert [a.name for a in svc.list_assets(ctx)] == ["web1"]

        remove.error = None
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await settled(pilot)
        assert remove.off_the_ui_thread() and len(remove.threads) == 2
        assert "Asset web1 removed" in toasts(app)
        assert app.screen.query_one("#assets-table").row_count == 0  # type: ignore[attr-defined]
    assert svc.list_assets(ctx) == []


@sync
async def test_a_totp_check_runs_off_the_ui_thread_and_a_second_enter_checks_once(ctx,  # type: ignore[no-untyped-def]
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The OTP modal's check writes the try (and the code's time step): a thread worker, one at a time."""
    from datetime import datetime, timedelta, timezone
    from urllib.parse import parse_qs, urlparse

    import core.mfa
    from core import operators as ops
    from core.mfa import MfaSession, code_at
    from tui.modals.otp import OtpModal

    t0 = datetime(2025, 3, 1, 12, 0, 10, tzinfo=timezone.utc)
    ctx.operator = "alice"
    ops.add_operator(ctx, "alice", "alice@example.org")
    secret = parse_qs(urlparse(ops.start_enrolment(ctx, "alice").uri).query)["secret"][0]
    before = t0 - timedelta(seconds=60)
    ops.confirm_enrolment(ctx, "alice", code_at(secret, before), now=before)
    threads: list[threading.Thread] = []
    entered, release = threading.Event(), threading.Event()
    real = core.mfa.verify_code

    def held(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        entered.set()
        assert release.wait(30), "the test never released the check"
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core.mfa, "verify_code", held)
    results: list[bool | None] = []
    mfa = MfaSession(ctx.settings, clock=lambda: t0)

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(OtpModal(ctx, mfa), results.append)

    async with Host().run_test(size=SIZE) as pilot:
        try:
            pilot.app.screen.query_one("#otp-code", Input).value = code_at(secret, t0)
            await pilot.press("enter")
            await until(pilot, entered.is_set, "the check to reach core")
            await pilot.press("enter", "escape")  # while it is checked: no second check, and Esc does not cancel
            await pilot.pause()
            assert isinstance(pilot.app.screen, OtpModal)
        finally:
            release.set()
        await written(pilot)
        await until(pilot, lambda: results == [True], "the modal to close unlocked")
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert mfa.unlocked("alice", now=t0)
