"""The asset form for database platforms: fields appear with the platform, the port follows it, options are saved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.widgets import Input, Label, Select

from storage.inventory import get_asset
from tests.tui.helpers import settled
from tui.app import KeyturnApp
from tui.modals.asset_form import AssetFormModal


def test_database_fields_follow_the_platform_and_are_saved(demo_app: Callable[[], KeyturnApp], demo_ctx) -> None:  # noqa: ANN001
    async def flow() -> None:
        app = demo_app()
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("i")
            await pilot.pause()
            await pilot.press("n")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, AssetFormModal)
            assert not form.query_one("#f-database").display and not form.query_one("#f-tls").display
            form.query_one("#name", Input).value = "pg-new"
            form.query_one("#address", Input).value = "db.example"
            form.query_one("#platform", Select).value = "postgresql"
            await pilot.pause()
            assert form.query_one("#f-database").display and form.query_one("#f-ca_file").display
            assert form.query_one("#port", Input).value == "5432"
            assert "Port" == str(form.query_one("#f-port .field-title", Label).render())
            form.query_one("#database", Input).value = "app"
            form.query_one("#ca_file", Input).value = "relative.pem"
            await pilot.press("ctrl+s")
            await settled(pilot)  # the save runs in a thread worker
            assert "ca_file" in str(form.query_one("#err-ca_file", Label).render())  # nothing saved yet
            form.query_one("#tls", Select).value = "verify-full"
            form.query_one("#ca_file", Input).value = "/etc/ssl/db-ca.pem"
            form.query_one("#gateway", Input).value = "no-such-host"
            await pilot.press("ctrl+s")
            await settled(pilot)  # the save runs in a thread worker
            assert "gateway: no asset named 'no-such-host'" in str(form.query_one("#err-form", Label).render())
            form.query_one("#gateway", Input).value = "web-01"
            await pilot.press("ctrl+s")
            await settled(pilot)  # the save runs in a thread worker
            assert not isinstance(app.screen, AssetFormModal)
        saved = get_asset(demo_ctx.db, "pg-new")
        assert (saved.platform, saved.port, saved.database, saved.tls, saved.ca_file, saved.gateway) == (
            "postgresql", 5432, "app", "verify-full", "/etc/ssl/db-ca.pem", "web-01")

    asyncio.run(flow())
