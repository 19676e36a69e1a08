"""Snapshots of every mode and every modal at 80x24 (the target size), the main modes at 120x40, a live run,
on fixed demo data and a frozen clock.

Regenerate after an intended change with: .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from core.events import (
    AccountPushed, AccountSettled, AssetConnected, AssetConnecting, AssetFailed, ExecutionStarted,
)
from tests.tui.demo_data import NOW
from tui.screens.base import ModeScreen

SMALL = (80, 24)
LARGE = (120, 40)
MODES = ["o", "t", "h", "s", "i", "u"]  # overview, tasks, history, records, inventory, audit


async def settle(pilot: Pilot) -> None:
    """Wait until every screen read started so far has reached its screen (reads run in thread workers), and
    any read a shown result set off (a highlighted row loading its details) too, and every write has landed."""
    app = pilot.app
    while True:
        while isinstance(app.screen, ModeScreen) and not app.screen.read_started:
            await pilot.pause()  # the mode's first load starts with its first resume
        await app.reads.settled()  # type: ignore[attr-defined]
        await pilot.pause()
        # A table filled from a read sizes its columns on its next idle turn: the picture waits for that too.
        # The task form's live preview is debounced (a timer, then a read): wait for the timer to have fired.
        if not app.reads.pending and not app.writes.pending and not any(  # type: ignore[attr-defined]
                table._require_update_dimensions for screen in app.screen_stack for table in screen.query(DataTable)) \
                and not any(getattr(screen, "_preview_timer", None) is not None for screen in app.screen_stack):
            return


def keys(*pressed: str):  # type: ignore[no-untyped-def]
    """run_before for snap_compare: press each key once the reads the previous one started have landed."""

    async def run(pilot: Pilot) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


@pytest.mark.parametrize("key", MODES)
def test_mode_80x24(snap_compare, demo_app, key: str) -> None:
    """Each mode at 80x24: every footer key and the columns that matter visible."""
    assert snap_compare(demo_app(), run_before=keys(key), terminal_size=SMALL)


@pytest.mark.parametrize("key", MODES)
def test_mode_120x40(snap_compare, demo_app, key: str) -> None:
    """Each mode on a larger terminal."""
    assert snap_compare(demo_app(), run_before=keys(key), terminal_size=LARGE)


def test_task_form_empty(snap_compare, demo_app) -> None:
    """The new-task form as it opens."""
    assert snap_compare(demo_app(), run_before=keys("t", "n"), terminal_size=SMALL)


async def _bad_task_form(pilot: Pilot) -> None:
    """Open the task form, type a bad name and a bad user name, save; wait for the error lines."""
    await settle(pilot)
    from tests.tui.helpers import until

    await pilot.press("t", "n")
    await until(pilot, lambda: pilot.app.screen.focused is not None and pilot.app.screen.focused.id == "name",
                "the task form")
    await settle(pilot)  # nodes, operators, assets
    await pilot.press(" ", "b", "a", "d", "tab", "r", "o", "o", "t", ":", "x", "ctrl+s")
    await until(pilot, lambda: pilot.app.screen.query_one("#err-assets").display, "the form's error lines")
    await until(pilot, lambda: getattr(pilot.app.screen.focused, "id", None) == "name", "the focus back on Name")
    await pilot.wait_for_scheduled_animations()  # Name scrolled into view
    # Where the focus goes after a failed save is test_defects' business; this picture is the error lines,
    # without a cursor whose drawing races the screenshot on a busy machine.
    await settle(pilot)
    pilot.app.screen.set_focus(None)
    await pilot.pause()


def test_task_form_validation_errors(snap_compare, demo_app) -> None:
    """Saving a form with a bad name, a bad user name and no targets shows an error under each field."""
    assert snap_compare(demo_app(), run_before=_bad_task_form, terminal_size=SMALL)


async def _asset_form(pilot: Pilot) -> None:
    """Inventory, wait for the highlighted asset, e; wait for the form with Address focused."""
    from tests.tui.helpers import until

    await settle(pilot)
    await pilot.press("i")
    await until(pilot, lambda: getattr(pilot.app.screen, "selected_asset", lambda: None)() is not None, "an asset")
    await settle(pilot)
    await pilot.press("e")
    await until(pilot, lambda: getattr(pilot.app.screen.focused, "id", None) == "address", "the asset form")
    await pilot.pause()


def test_asset_form(snap_compare, demo_app) -> None:
    """The asset form on an existing asset."""
    assert snap_compare(demo_app(), run_before=_asset_form, terminal_size=SMALL)


def test_help(snap_compare, demo_app) -> None:
    """? on Tasks: every key of the screen."""
    assert snap_compare(demo_app(), run_before=keys("t", "question_mark"), terminal_size=SMALL)


def test_run_question(snap_compare, demo_app) -> None:
    """r asks before a run."""
    assert snap_compare(demo_app(), run_before=keys("t", "r"), terminal_size=SMALL)


def test_preview(snap_compare, demo_app) -> None:
    """p: the accounts a task would change and skip."""
    assert snap_compare(demo_app(), run_before=keys("t", "p"), terminal_size=SMALL)


def test_audit_detail(snap_compare, demo_app) -> None:
    """Enter on an audit event shows it whole."""
    assert snap_compare(demo_app(), run_before=keys("u", "enter"), terminal_size=SMALL)


def test_import_prompt(snap_compare, demo_app) -> None:
    """f in Inventory asks for a file."""
    assert snap_compare(demo_app(), run_before=keys("i", "f"), terminal_size=SMALL)


async def _otp(pilot: Pilot) -> None:
    await settle(pilot)
    from tui.modals.otp import OtpModal

    app = pilot.app
    await app.push_screen(OtpModal(app.ctx, app.mfa))  # type: ignore[attr-defined]
    await settle(pilot)  # the tries left are read in a thread worker


def test_otp(snap_compare, demo_app) -> None:
    """The TOTP prompt before a reveal."""
    assert snap_compare(demo_app(), run_before=_otp, terminal_size=SMALL)


async def _reveal_reason(pilot: Pilot) -> None:
    await settle(pilot)
    pilot.app.reveal_record(187, "both")  # type: ignore[attr-defined]
    await pilot.pause()
    await pilot.press(*"INC-4711")
    await pilot.pause()


def test_reveal_reason(snap_compare, demo_app) -> None:
    """A reveal first asks why (ticket id or text), as `keyturn reveal --reason`; the code comes after."""
    assert snap_compare(demo_app(), run_before=_reveal_reason, terminal_size=SMALL)


async def _reveal(pilot: Pilot) -> None:
    await settle(pilot)
    from core.reveal import RevealedSecret
    from tui.modals.reveal import RevealModal

    items = [RevealedSecret("old", "web-01", "app", "password", "change_record", 187, "old", "Old-Demo-Pass-1"),
             RevealedSecret("new", "web-01", "app", "password", "change_record", 187, "new", "New-Demo-Pass-2")]
    await pilot.app.push_screen(RevealModal("Secrets of record 187", items))
    await pilot.pause()


def test_reveal(snap_compare, demo_app) -> None:
    """Revealed secrets, masked until asked."""
    assert snap_compare(demo_app(), run_before=_reveal, terminal_size=SMALL)


async def _enrol(pilot: Pilot) -> None:
    await settle(pilot)
    from core.mfa import provisioning_uri
    from core.operators import Enrolment
    from core.qr import qr_halfblocks
    from tui.modals.enrol import EnrolModal

    uri = provisioning_uri("carol", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")  # a fixed demo secret, never a real one
    await pilot.app.push_screen(EnrolModal(pilot.app.ctx, Enrolment("carol", uri, qr_halfblocks(uri))))  # type: ignore[attr-defined]
    await pilot.pause()


def test_enrol(snap_compare, demo_app) -> None:
    """The QR code beside the first-code field fits 80x24 whole."""
    assert snap_compare(demo_app(), run_before=_enrol, terminal_size=SMALL)


def test_execution_detail(snap_compare, demo_app) -> None:
    """An execution with a failed account and a mail delivery error: records per asset and the log."""
    assert snap_compare(demo_app(), run_before=keys("h", "enter"), terminal_size=SMALL)


async def _feed_run(pilot: Pilot) -> None:
    await settle(pilot)
    app = pilot.app
    run = app._new_run("web-passwords", "run")  # type: ignore[attr-defined]
    t = [NOW + timedelta(seconds=i) for i in range(10)]
    for event in (
        ExecutionStarted(41, "web-passwords", "manual", 6, 3, at=t[0]),
        AssetConnecting(41, "web-01", "10.0.1.11", at=t[1]),
        AssetConnecting(41, "web-02", "10.0.1.12", at=t[1]),
        AssetConnected(41, "web-01", at=t[2]),
        AccountPushed(41, "web-01", "app", 201, at=t[3]),
        AccountSettled(41, "web-01", "app", 201, "success", at=t[4]),
        AccountSettled(41, "web-01", "deploy", 202, "failed", "sudo: a password is required", at=t[5]),
        AssetFailed(41, "web-02", "connection timed out after 10s", at=t[6]),
        AccountSettled(41, "web-02", "app", 203, "unverified", "host unreachable after the push", at=t[7]),
    ):
        app.record_event(run, event)  # type: ignore[attr-defined]
    await pilot.press("h")
    await pilot.pause()


def test_running_execution_log(snap_compare, demo_app) -> None:
    """The live run panel while a run is going: progress, counts and the coloured log wrapped to its pane."""
    assert snap_compare(demo_app(), run_before=_feed_run, terminal_size=SMALL)


async def _account_form(pilot: Pilot) -> None:
    """Inventory, wait for the highlighted asset, a; type a name and a password in one burst, tick privileged
    and type its become password; wait for all."""
    from textual.widgets import Input

    from tests.tui.helpers import until

    await settle(pilot)
    await pilot.press("i")
    await until(pilot, lambda: getattr(pilot.app.screen, "selected_asset", lambda: None)() is not None, "an asset")
    await settle(pilot)
    await pilot.press("a", *"deploy2", "tab", "tab", *"Typed-pw-1")
    await until(pilot, lambda: pilot.app.screen.query("#password")
                and pilot.app.screen.query_one("#password", Input).value == "Typed-pw-1", "the typed password")
    await pilot.press("tab", "space", "tab", *"Sudo-pw-2")
    await until(pilot, lambda: pilot.app.screen.query_one("#become", Input).value == "Sudo-pw-2",
                "the typed become password")
    await pilot.pause()


def test_account_form(snap_compare, demo_app) -> None:
    """a in Inventory: a new privileged account on the highlighted asset, its password and become password
    masked."""
    assert snap_compare(demo_app(), run_before=_account_form, terminal_size=SMALL)


def test_help_inventory(snap_compare, demo_app) -> None:
    """? on Inventory: the asset and account keys the footer has no room for."""
    assert snap_compare(demo_app(), run_before=keys("i", "question_mark"), terminal_size=SMALL)
