"""The app builds the other modes' screens while idle (tui/app.py _prebuild_next): composed, laid out, loaded and
drawn ahead, so a first visit only resumes them. What a person sees must not change for it."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

import tui.app

from core.context import Context
from core.services.inventory import add_asset
from tests.tui.demo_data import NOW
from tests.tui.helpers import settled, sync, until
from tui.app import KeyturnApp

SIZE = (80, 24)


def _names(app: KeyturnApp) -> list[str]:
    table = app.screen.query_one("#assets-table", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@sync
async def test_every_mode_is_built_ahead_and_a_visit_shows_what_changed_since(demo_ctx: Context) -> None:
    """Built ahead with the data of that moment; an asset added afterwards is in Inventory at its first visit."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.prebuilt, "the screens built ahead")
        assert set(app._screen_stacks) == set(app.MODES)  # every mode's screen exists before its first visit
        inventory = app._screen_stacks["inventory"][0]
        built = [str(r[0]) for r in (inventory.query_one("#assets-table", DataTable).get_row_at(i)
                                     for i in range(inventory.query_one("#assets-table", DataTable).row_count))]
        assert built, "the Inventory screen was loaded ahead"
        add_asset(demo_ctx, "aaa-added-later", address="10.9.9.9")
        await pilot.press("i")
        await settled(pilot)
        assert app.current_mode == "inventory"
        assert "aaa-added-later" in _names(app)
        assert "aaa-added-later" not in built


@sync
async def test_a_mode_visited_before_it_was_built_ahead_is_left_to_its_visit(demo_ctx: Context) -> None:
    """A key pressed right after start: the visit builds the screen as before, and the idle building skips it."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await settled(pilot)
        first = app.screen
        assert _names(app)
        await until(pilot, lambda: app.prebuilt, "the screens built ahead")
        await pilot.press("o")
        await settled(pilot)
        await pilot.press("i")
        await settled(pilot)
        assert app.screen is first and _names(app)


@sync
async def test_building_ahead_stops_once_the_app_shuts_down(demo_ctx: Context,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A building step due while Textual closes the screens of every mode must not register another screen: the
    close walks the mode stacks and failed with 'dictionary changed size during iteration' (seen once in CI)."""
    monkeypatch.setattr(tui.app, "PREBUILD_AFTER", 600.0)  # nothing built ahead while the test runs
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        assert set(app._screen_stacks) == {app.current_mode}
    stacks = {mode: list(stack) for mode, stack in app._screen_stacks.items()}
    app._prebuild_next()  # what a timer firing during the shutdown runs
    assert {mode: list(stack) for mode, stack in app._screen_stacks.items()} == stacks
    assert not app.prebuilt


@sync
async def test_after_a_resize_the_other_screens_are_laid_out_again_ahead(demo_ctx: Context) -> None:
    """Built ahead at 80x24, then the terminal grows to 120x40: every other mode's screen (built ahead or visited)
    is laid out at the new size while idle, so its next visit only shows it; and it shows what it should."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await settled(pilot)
        await pilot.press("o")
        await settled(pilot)
        await until(pilot, lambda: app.prebuilt, "the screens built ahead")
        others = {mode: stack[0] for mode, stack in app._screen_stacks.items() if mode != "overview"}
        assert set(others) == set(app.MODES) - {"overview"}
        assert {tuple(s.outer_size) for s in others.values()} == {SIZE}
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await until(pilot, lambda: app.prebuilt and all(s.outer_size == (120, 40) for s in others.values()),
                    "the screens built again at the new size")
        inventory = others["inventory"]
        await pilot.press("i")
        await settled(pilot)
        assert app.screen is inventory and inventory.outer_size == (120, 40)
        table = inventory.query_one("#assets-table", DataTable)
        assert table.size.width > SIZE[0]  # the table took the new width
        assert _names(app)
