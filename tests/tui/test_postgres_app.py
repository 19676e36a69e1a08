"""The app on a PostgreSQL database shows exactly what it shows on SQLite (demo data, frozen clock)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.tui.test_snapshots import LARGE as SIZE

MODES = ["o", "t", "h", "s", "i"]


async def _screens(app) -> dict[str, str]:  # noqa: ANN001
    shots: dict[str, str] = {}
    async with app.run_test(size=SIZE) as pilot:
        for key in MODES:
            await pilot.press(key)
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            # The SVG's ids are random per export; the text and styles are what a user sees.
            shots[key] = re.sub(r"terminal-\d+", "terminal", app.export_screenshot())
        errors = [n.message for n in app._notifications if n.severity == "error"]  # noqa: SLF001
    assert not errors, errors
    return shots


@pytest.mark.both_backends
def test_every_mode_shows_the_same_on_both_backends(demo_app, backend: str, request: pytest.FixtureRequest) -> None:  # noqa: ANN001
    """Each mode loads without an error; once both backends ran, their screens are compared byte for byte."""
    shots = asyncio.run(_screens(demo_app()))
    assert "web-01" in shots["i"] and "web-passwords" in shots["t"]  # the demo data, read from this backend
    cache = request.config.stash.setdefault(_KEY, {})
    cache[backend] = shots
    if "sqlite" in cache and "postgresql" in cache:
        for key in MODES:
            assert cache["sqlite"][key] == cache["postgresql"][key], f"mode {key} differs between SQLite and PostgreSQL"


_KEY = pytest.StashKey[dict]()
