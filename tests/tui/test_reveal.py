"""Pilot flows of the reveal dialogs: TOTP prompt, masked secrets, timed hiding, copy; enrolment; audit mode."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest
from textual.app import App
from textual.widgets import Input, Label

from core import operators as ops
from core.audit import list_events
from core.mfa import MfaSession, code_at
from core.reveal import reveal_account
from storage.inventory import upsert_account, upsert_asset
from tests.tui.helpers import settled, until, written
from tui.modals.enrol import EnrolModal
from tui.modals.otp import OtpModal
from tui.modals.reveal import MASK, RevealModal

SECRET = "Zq7-Vault-Pass9"
T0 = datetime(2025, 3, 1, 12, 0, 10, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class RevealFlowApp(App[None]):
    """Asks for a code, then shows one account's secrets: the same steps KeyturnApp takes."""

    def __init__(self, ctx, mfa: MfaSession, account_id: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.mfa = mfa
        self.account_id = account_id

    def on_mount(self) -> None:
        def unlocked(ok: bool | None) -> None:
            if ok:
                self.push_screen(RevealModal("Secrets of web1", reveal_account(self.ctx, self.mfa, self.account_id, reason="T-1")))

        self.push_screen(OtpModal(self.ctx, self.mfa), unlocked)


@pytest.fixture
def setup(ctx):
    """A confirmed operator alice (acting), an account web1/root, and a 1 s hide time."""
    ctx.operator = "alice"
    ctx.settings.reveal_hide_seconds = 1
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    secret = parse_qs(urlparse(enrolment.uri).query)["secret"][0]
    ops.confirm_enrolment(ctx, "alice", code_at(secret, T0 - timedelta(seconds=60)), now=T0 - timedelta(seconds=60))
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="127.0.0.2")
        account, _ = upsert_account(ctx.db, s, asset, "root", secret=SECRET)
    return ctx, secret, account.id


def sync(test):
    """Run an async Pilot test with asyncio.run (no asyncio plugin is installed); fixtures pass through."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def screen_text(app: App) -> str:
    return app.export_screenshot().replace("&#160;", " ")


@sync
async def test_reveal_flow_masks_shows_hides_and_copies(setup):
    ctx, totp, account_id = setup
    clock = Clock()
    mfa = MfaSession(ctx.settings, clock=clock)
    app = RevealFlowApp(ctx, mfa, account_id)
    async with app.run_test(size=(100, 32)) as pilot:
        assert isinstance(app.screen, OtpModal)
        # The status is read in a thread worker (tui/reads.read_off_ui): this host app has no read counter.
        await until(pilot, lambda: "5 tries before a lockout" in str(app.screen.query_one("#otp-status", Label).render()),
                    "the TOTP status")
        wrong = "000000" if code_at(totp, T0) != "000000" else "111111"
        await pilot.press(*wrong, "enter")
        await written(pilot)  # the code is checked in a thread worker (it writes the try)
        assert "4 tries left" in str(app.screen.query_one("#otp-error", Label).render())
        assert isinstance(app.screen, OtpModal) and app.screen.query_one("#otp-code", Input).value == ""

        await pilot.press(*code_at(totp, T0), "enter")
        await written(pilot)
        assert isinstance(app.screen, RevealModal)
        masked = screen_text(app)
        assert "web1 root" in masked and MASK in masked
        assert SECRET not in masked

        await pilot.press("s")
        await pilot.pause()
        assert SECRET in screen_text(app)

        # The 1 s hide time from the settings: the app's own timer masks it again.
        await until(pilot, lambda: SECRET not in screen_text(app), "the secret to be masked again", timeout=10)
        hidden = screen_text(app)
        assert SECRET not in hidden and MASK in hidden

        await pilot.press("c")
        assert app.clipboard == SECRET  # written with OSC 52 by App.copy_to_clipboard
        assert all(SECRET not in n.message for n in app._notifications)

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RevealModal)

    events = list_events(ctx, action="secret.reveal")
    assert [(e.actor, e.object_type, e.object_id) for e in events] == [("alice", "account", str(account_id))]
    assert all(SECRET not in str(e) for e in list_events(ctx, limit=100))


@sync
async def test_otp_modal_skips_when_unlocked_and_shows_the_lockout(setup):
    ctx, totp, account_id = setup
    clock = Clock()
    mfa = MfaSession(ctx.settings, clock=clock)
    results: list[bool | None] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(OtpModal(ctx, mfa), results.append)

    async with Host().run_test(size=(100, 32)) as pilot:
        for _ in range(5):
            await pilot.press(*"123456" if code_at(totp, T0) != "123456" else "654321", "enter")
            await written(pilot)
        error = str(pilot.app.screen.query_one("#otp-error", Label).render())
        assert "locked out" in error and pilot.app.screen.query_one("#otp-code", Input).disabled
        await pilot.press("escape")
        await pilot.pause()
    assert results == [False]

    clock.now = T0 + timedelta(minutes=16)
    mfa.unlock(ctx, code_at(totp, clock.now))
    async with Host().run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        assert not isinstance(pilot.app.screen, OtpModal)
    assert results == [False, True]


@sync
async def test_enrol_modal_confirms_with_a_code(ctx):
    ops.add_operator(ctx, "bob", "bob@example.org")
    enrolment = ops.start_enrolment(ctx, "bob")
    secret = parse_qs(urlparse(enrolment.uri).query)["secret"][0]
    results: list[bool | None] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(EnrolModal(ctx, enrolment), results.append)

    async with Host().run_test(size=(100, 32)) as pilot:
        shot = screen_text(pilot.app)
        assert "\u2584" in shot and "\u2580" in shot  # the half-block QR is on screen
        await pilot.press(*"000000", "enter")
        await written(pilot)
        assert "wrong code" in str(pilot.app.screen.query_one("#enrol-error", Label).render())
        await pilot.press(*code_at(secret, datetime.now(timezone.utc)), "enter")
        await written(pilot)
    assert results == [True] and ops.get_operator(ctx, "bob").confirmed


@sync
async def test_audit_mode_lists_events_and_verifies(ctx):
    from core.audit import record_event

    try:
        from tui.app import KeyturnApp
    except ImportError:  # pragma: no cover - the app shell is written in parallel
        pytest.skip("tui.app is not there yet")
    for i in range(3):
        record_event(ctx, "task.edit", "task", f"t{i}", {"n": i})
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("u")
        await pilot.pause()
        shot = screen_text(app)
        assert "task.edit" in shot and "task:t2" in shot
        await pilot.press("v")
        await pilot.pause()
        assert "chain ok: 3 events" in str(app.screen.query_one("#audit-verify", Label).render())


@sync
async def test_first_operator_enrols_from_audit_mode_by_keys(ctx):
    """The TUI has the same enrolment as `keyturn operator add` + `confirm`: name, email, QR, first code."""
    from tui.app import KeyturnApp

    ctx.settings.reconcile_on_start = False
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("u", "n")
        await pilot.pause()
        await pilot.press(*"carol", "enter")
        await pilot.pause()
        await pilot.press(*"carol@example.org", "enter")
        await pilot.pause()
        assert isinstance(app.screen, EnrolModal)
        assert "\u2584" in screen_text(app)  # the QR code is drawn
        secret = parse_qs(urlparse(app.screen.enrolment.uri).query)["secret"][0]
        await pilot.press(*code_at(secret, datetime.now(timezone.utc)), "enter")
        await settled(pilot)
        # The app's idea of who may do what follows the write: operators are enforced from now on, so a reveal
        # asks for a code instead of saying no operator is enrolled.
        assert app.standing is not None and app.enforcing
    op = ops.get_operator(ctx, "carol")
    assert op.confirmed and op.email == "carol@example.org"


@sync
async def test_adding_an_operator_needs_the_acting_operators_code_once_enforcing(ctx):
    """Once an operator is confirmed, a name alone cannot add another (it would mint a second identity)."""
    from tui.app import KeyturnApp

    ops.add_operator(ctx, "alice", "alice@example.org")

    enrolment = ops.start_enrolment(ctx, "alice")
    ops.confirm_enrolment(ctx, "alice", code_at(parse_qs(urlparse(enrolment.uri).query)["secret"][0],
                                                datetime.now(timezone.utc) - timedelta(seconds=30)))
    ctx.operator = "alice"
    ctx.settings.reconcile_on_start = False
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("u", "n")
        await pilot.pause()
        assert isinstance(app.screen, OtpModal)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, (OtpModal, EnrolModal))
    assert [o.name for o in ops.list_operators(ctx)] == ["alice"]


@sync
async def test_new_operator_in_the_app_never_shows_their_seed_to_the_admin(setup):
    """Finding 10 in the app: alice adds bob and sees no QR code; bob enrols his own phone (Audit, e)."""
    from tui.app import KeyturnApp

    ctx, alice_secret, _ = setup
    ctx.settings.reconcile_on_start = False
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        app.mfa.unlock(ctx, code_at(alice_secret, datetime.now(timezone.utc)))
        await pilot.press("u", "n")
        await pilot.pause()
        await pilot.press(*"bob", "enter")
        await pilot.pause()
        await pilot.press(*"bob@example.org", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, EnrolModal)
        assert "\u2584" not in screen_text(app)
        assert any("bob enrols their phone at their own terminal: keyturn operator enrol" in str(n.message)
                   for n in app._notifications)
        await pilot.press("e")  # alice is enrolled already: no new seed for her either
        await pilot.pause()
        assert not isinstance(app.screen, EnrolModal)
    assert not ops.get_operator(ctx, "bob").has_secret

    ctx.operator = "bob"  # bob, in his own session
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("u", "e")
        await pilot.pause()
        assert isinstance(app.screen, EnrolModal) and app.screen.enrolment.operator == "bob"
        secret = parse_qs(urlparse(app.screen.enrolment.uri).query)["secret"][0]
        await pilot.press(*code_at(secret, datetime.now(timezone.utc)), "enter")
        await pilot.pause()
    assert ops.get_operator(ctx, "bob").confirmed


@sync
async def test_the_app_asks_why_before_a_reveal_and_audits_the_reason(setup):
    """As `keyturn reveal --reason`: a ticket id or text first (empty refused), then the code; kept in the event."""
    from tui.app import KeyturnApp
    from tui.modals.prompt import PromptModal

    ctx, totp, account_id = setup
    ctx.settings.reconcile_on_start = False
    app = KeyturnApp(ctx)
    async with app.run_test(size=(100, 32)) as pilot:
        app.reveal_account(account_id)
        await pilot.pause()
        assert isinstance(app.screen, PromptModal) and "Reason to reveal account" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        assert "reason: say why" in str(app.screen.query_one("#prompt-error", Label).render())
        await pilot.press(*"INC-4711 db restore", "enter")
        await pilot.pause()
        assert isinstance(app.screen, OtpModal)
        await pilot.press(*code_at(totp, datetime.now(timezone.utc)), "enter")
        await pilot.pause()
        assert isinstance(app.screen, RevealModal)
        await pilot.press("escape")
        await pilot.pause()
        app.reveal_account(account_id)  # unlocked now: the reason is still asked, the code is not
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, (PromptModal, OtpModal, RevealModal))
    [event] = list_events(ctx, action="secret.reveal")
    assert event.detail["reason"] == "INC-4711 db restore" and event.actor == "alice"


def test_core_refuses_a_reveal_without_a_reason(setup):
    from core.errors import InputError

    ctx, totp, account_id = setup
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(totp, datetime.now(timezone.utc)))
    with pytest.raises(InputError, match="reason: say why"):
        reveal_account(ctx, mfa, account_id, reason="  \x1b[2J ")
    assert list_events(ctx, action="secret.reveal") == []
