"""Overview: drift beside failed changes, the 7/30/90 day switch, and ignored records leaving the list."""

from __future__ import annotations

from textual.widgets import DataTable, Label, Sparkline, Static

from core.record_actions import set_ignored
from storage.drift import NewHeartbeat, add_heartbeats
from storage.inventory import list_accounts
from tests.tui.demo_data import NOW
from tests.tui.helpers import until
from tests.tui.test_reveal import sync


@sync
async def test_day_switch_drift_count_and_ignore(demo_ctx, demo_app) -> None:  # noqa: ANN001
    acc = list_accounts(demo_ctx.db)[0]
    add_heartbeats(demo_ctx.db, [NewHeartbeat(acc.id, None, acc.asset_name, acc.username, acc.version, "rejected",
                                              "changed outside keyturn", NOW)])
    app = demo_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("o")
        await pilot.pause()
        screen = app.screen
        stats = str(screen.query_one("#overview-stats", Static).render())
        assert "Drift        1 heartbeat not ok" in stats
        assert len(screen.query_one("#spark-success", Sparkline).data) == 30
        for days in (90, 7, 30):
            await pilot.press("d")
            await pilot.pause()
            assert str(screen.query_one("#chart-title", Label).render()) == f"Changes per day, last {days} days"
            assert len(screen.query_one("#spark-success", Sparkline).data) == days
        table = screen.query_one("#attention-table", DataTable)
        first = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        rows = table.row_count
        set_ignored(demo_ctx, [first], True)
        await pilot.press("f5")
        await pilot.pause()
        assert table.row_count == rows - 1


@sync
async def test_records_filter_by_drift_shows_only_drifted_accounts(demo_ctx, demo_app) -> None:  # noqa: ANN001
    """Records' status filter 'drift' lists the records of accounts whose newest heartbeat is not ok, no other."""
    from textual.widgets import Select

    from storage.executions import list_records

    records = list_records(demo_ctx.db)
    drifted = next(r for r in records if r.account_id is not None)
    healthy = next(r for r in records if r.account_id not in (None, drifted.account_id))
    by_id = {a.id: a for a in list_accounts(demo_ctx.db)}
    beats = [NewHeartbeat(a.id, None, a.asset_name, a.username, a.version, "ok", "", NOW) for a in by_id.values()]
    add_heartbeats(demo_ctx.db, beats)  # everyone fine, then the drifted one is rejected: only its newest counts
    acc = by_id[drifted.account_id]
    add_heartbeats(demo_ctx.db, [NewHeartbeat(acc.id, None, acc.asset_name, acc.username, acc.version, "rejected",
                                              "changed outside keyturn", NOW)])
    expected = {str(r.id) for r in records if r.account_id == drifted.account_id}
    app = demo_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#filter-status", Select).value = "drift"
        table = app.screen.query_one("#records-table", DataTable)
        await until(pilot, lambda: {str(k.value) for k in table.rows} == expected, "the drifted account's records")
        assert str(healthy.id) not in {str(k.value) for k in table.rows}


@sync
async def test_inventory_shows_only_assets_with_drift_on_shift_d(demo_ctx, demo_app) -> None:  # noqa: ANN001
    """D in Inventory keeps the assets holding an account whose newest heartbeat is not ok; D again shows all."""
    accounts = list_accounts(demo_ctx.db)
    acc = accounts[0]
    add_heartbeats(demo_ctx.db, [NewHeartbeat(a.id, None, a.asset_name, a.username, a.version, "ok", "", NOW)
                                 for a in accounts])
    add_heartbeats(demo_ctx.db, [NewHeartbeat(acc.id, None, acc.asset_name, acc.username, acc.version, "locked",
                                              "account locked", NOW)])
    app = demo_app()
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("i")
        await pilot.pause()
        table = app.screen.query_one("#assets-table", DataTable)
        everyone = table.row_count
        assert everyone > 1
        await pilot.press("D")
        await pilot.pause()
        assert [str(k.value) for k in table.rows] == [acc.asset_name]
        assert "with drift" in str(app.screen.query_one("#assets-count", Label).render())
        await pilot.press("D")
        await pilot.pause()
        assert table.row_count == everyone
