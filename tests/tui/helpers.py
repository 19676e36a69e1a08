"""What the Pilot tests share: run an async test, wait on the app's own state, read its toasts."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

from textual.app import App
from textual.pilot import Pilot


def sync(test):  # type: ignore[no-untyped-def]
    """Run an async Pilot test with asyncio.run (no asyncio plugin is installed); fixtures pass through."""

    @functools.wraps(test)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Pilot, done: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Let the app work until done() holds (a screen, a worker result, a toast); fail naming what never came."""
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await pilot.pause(0.02)


async def written(pilot: Pilot) -> None:
    """Every write's worker ended and its outcome shown: for any App (a test's host of one modal has no counters)."""
    from tui.writes import WRITE_GROUP

    while any(w.group == WRITE_GROUP and not w.is_finished for w in pilot.app.workers):
        await pilot.pause(0.005)
    await pilot.pause()


async def settled(pilot: Pilot) -> None:
    """Every write applied and every screen read shown, and the screen drawn with them (a save's reload, a mode
    switch's reload, a form's set-up)."""
    app = pilot.app
    while app.writes.pending or app.reads.pending:  # type: ignore[attr-defined]
        await app.writes.settled()  # type: ignore[attr-defined]
        await app.reads.settled()  # type: ignore[attr-defined]  # a write's outcome may start a reload
    await pilot.pause()


def toasts(app: App) -> list[str]:
    """Texts of the notifications the app is showing."""
    return [str(n.message) for n in app._notifications]
