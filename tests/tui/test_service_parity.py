"""The same inventory use case from the command line and from the app leaves the same audit rows: both front
ends call core.services.inventory, so the action names, objects, details and their order cannot drift apart."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.audit import list_events
from core.config import load_settings
from core.context import Context, open_context
from tui.app import KeyturnApp
from tui.cli import main

SIZE = (100, 32)


def _rows(ctx: Context) -> list[tuple[str, str, str, dict]]:
    return [(e.action, e.object_id, e.actor, e.detail) for e in reversed(list_events(ctx, limit=50))]


def _cli_rows(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, settings) -> list[tuple]:  # type: ignore[no-untyped-def]
    for key, value in keyturn_env.items():
        monkeypatch.setenv(key, value)
    for args in (["asset", "add", "web9", "--address", "10.9.0.9", "--node", "/prod/web", "--comment", "db"],
                 ["asset", "edit", "web9", "--address", "10.9.0.10", "--inactive"],
                 ["asset", "remove", "web9", "--yes"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert main(args) == 0, args
    ctx = open_context(settings, operator="tester")
    try:
        return _rows(ctx)
    finally:
        ctx.close()


async def _until(pilot: Pilot, done: Callable[[], object], what: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await pilot.pause(0.05)


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
            await _until(pilot, lambda: app.screen.query("#address"), "the asset form")
            fill(name="web9", address="10.9.0.9", nodes="/prod/web", comment="db")
            await pilot.press("ctrl+s")
            await _until(pilot, lambda: len(app.screen_stack) == 1 and app.screen.selected_asset() == "web9",
                         "web9 in the table")
            await pilot.press("e")
            await _until(pilot, lambda: app.screen.query("#address"), "the edit form")
            fill(address="10.9.0.10")
            await pilot.click("#active")
            await pilot.press("ctrl+s")
            await _until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")
            await pilot.press("d")
            await _until(pilot, lambda: len(app.screen_stack) == 2, "the confirmation")
            await pilot.press("y")
            await _until(pilot, lambda: app.screen.selected_asset() is None, "web9 gone")

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
