"""Snapshots of every mode, the task form, a live run and the 80x24 layout, on fixed data and a frozen clock.

Regenerate after an intended change with: .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.pilot import Pilot

from core.events import (
    AccountPushed, AccountSettled, AssetConnected, AssetConnecting, AssetFailed, ExecutionStarted,
)
from tests.tui.demo_data import NOW

SIZE = (100, 32)


@pytest.mark.parametrize("key", ["o", "t", "h", "s", "i"])
def test_mode(snap_compare, demo_app, key: str) -> None:
    """Each mode on the demo data (o overview, t tasks, h history, s records, i inventory)."""
    assert snap_compare(demo_app(), press=[key], terminal_size=SIZE)


def test_task_form_empty(snap_compare, demo_app) -> None:
    """The new-task form as it opens."""
    assert snap_compare(demo_app(), press=["t", "n"], terminal_size=SIZE)


def test_task_form_validation_errors(snap_compare, demo_app) -> None:
    """Saving a form with a bad name, a bad user name and no targets shows an error under each field."""
    assert snap_compare(demo_app(), press=["t", "n", " ", "b", "a", "d", "tab", "r", "o", "o", "t", ":", "x",
                                           "ctrl+s", "_"], terminal_size=SIZE)


def test_execution_detail(snap_compare, demo_app) -> None:
    """An execution with a failed account and a mail delivery error: records per asset and the log."""
    assert snap_compare(demo_app(), press=["h", "enter"], terminal_size=SIZE)


async def _feed_run(pilot: Pilot) -> None:
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
    """The live run panel while a run is going: progress, counts and the coloured log."""
    assert snap_compare(demo_app(), run_before=_feed_run, terminal_size=SIZE)


@pytest.mark.parametrize("key", ["o", "t", "s"])
def test_small_terminal(snap_compare, demo_app, key: str) -> None:
    """The layout at 80x24."""
    assert snap_compare(demo_app(), press=[key], terminal_size=(80, 24))
