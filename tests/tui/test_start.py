"""Starting the app: an unsafe key file stops keyturn before any screen; the palette lists modes and actions."""

from __future__ import annotations

import asyncio

from core.config import Settings
from core.context import Context, open_context
from storage.keyfile import key_path
from tui.app import KeyturnApp, run_app


def test_unsafe_key_file_refuses_without_tui(settings: Settings, capsys) -> None:
    """A master key others can read: exit 2 with the reason on stderr, no app started."""
    open_context(settings).close()
    key_path(settings.home).chmod(0o644)
    assert run_app(settings, operator="tester") == 2
    err = capsys.readouterr().err
    assert err.startswith("keyturn: error: ") and "master.key" in err


def test_palette_lists_modes_and_screen_actions(demo_ctx: Context) -> None:
    """The command palette offers every mode switch and the current screen's actions by their descriptions."""

    async def flow() -> list[str]:
        app = KeyturnApp(demo_ctx)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("t")
            return [c.title for c in app.get_system_commands(app.screen)]

    titles = asyncio.run(flow())
    for title in ("Show Overview", "Show Tasks", "Show History", "Show Records", "Show Inventory",
                  "New", "Run now", "Preview targets", "Delete"):
        assert title in titles
