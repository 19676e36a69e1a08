"""Build the fixed demo database, run the app headless on a frozen clock, and save an SVG per mode.

    .venv/bin/python scripts/screenshots.py   # writes docs/screenshots/*.svg
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_settings  # noqa: E402
from core.context import open_context  # noqa: E402
from tests.tui.demo_data import build_demo, clock  # noqa: E402
from tui.app import KeyturnApp  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZE = (80, 24)  # what users see over SSH: the size the app is designed for
# file name -> keys pressed after start
SHOTS: dict[str, list[str]] = {
    "overview": ["o"],
    "tasks": ["t"],
    "task-form": ["t", "e"],
    "history": ["h"],
    "execution": ["h", "enter"],
    "records": ["s"],
    "inventory": ["i"],
    "audit": ["u"],
}


async def _shoot(app: KeyturnApp, keys: list[str], path: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        # The task form's target preview is debounced: wait for its line instead of a fixed pause.
        for _ in range(200):
            if not app.screen.query("#form-preview") or str(app.screen.query_one("#form-preview").render()):
                break
            await pilot.pause(0.02)
        await pilot.pause()
        app.save_screenshot(filename=path.name, path=str(path.parent))


def main() -> int:
    """Write one SVG per entry of SHOTS."""
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="keyturn-shots-"))
    try:
        settings = load_settings(env={"KEYTURN_HOME": str(tmp / "home"), "KEYTURN_CONFIG": str(tmp / "none.toml")})
        settings.reconcile_on_start = False  # the demo hosts do not exist
        ctx = open_context(settings, operator="alice", source="screenshots")
        import storage.audit

        real_now = storage.audit.utcnow
        storage.audit.utcnow = clock  # audit events on the frozen clock, like the snapshot tests
        try:
            build_demo(ctx)
        finally:
            storage.audit.utcnow = real_now
        for name, keys in SHOTS.items():
            if name == "audit" and "audit" not in KeyturnApp.MODES:
                continue
            path = OUT / f"{name}.svg"
            asyncio.run(_shoot(KeyturnApp(ctx, clock=clock), keys, path))
            print(path.relative_to(ROOT))
        ctx.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
