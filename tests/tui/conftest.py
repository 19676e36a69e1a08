"""Fixtures for app tests: a demo database with fixed data, an app on a frozen clock, sandbox hosts."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.config import Settings
from core.context import Context, open_context
from tests.conftest import seed_database
from tests.integration.conftest import sandbox_fleet  # noqa: F401 - re-exported fixture for the flow tests
from tests.tui.demo_data import build_demo, clock
from tui.app import KeyturnApp


@pytest.fixture(autouse=True)
def steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text inputs show a steady cursor in app tests: a blink phase must not decide what a snapshot holds."""
    from textual.widgets import Input

    original = Input.__init__

    def init(self: Input, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.cursor_blink = False

    monkeypatch.setattr(Input, "__init__", init)


@pytest.fixture
def demo_ctx(settings: Settings, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Context]:
    """An open context on a database holding the fixed demo data, acting as alice."""
    import storage.audit

    # The demo hosts do not exist: a reconcile at start would probe them and change the fixed data.
    settings.reconcile_on_start = False
    seed_database(settings, request)
    ctx = open_context(settings, operator="alice", source="pytest")
    # Audit events of the demo are stamped on the frozen clock, so the Audit mode looks the same every day. Only
    # this patch is undone afterwards: monkeypatch.undo() would also undo steady_cursor's, and a blinking cursor
    # made the snapshots of forms flaky under load (the picture taken in the blink's off phase).
    with monkeypatch.context() as patch:
        patch.setattr(storage.audit, "utcnow", clock)
        build_demo(ctx)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def demo_app(demo_ctx: Context) -> Callable[[], KeyturnApp]:
    """Factory of apps on the demo data with the frozen demo clock."""
    return lambda: KeyturnApp(demo_ctx, clock=clock)
