"""Issue 10's engine race: a connection error must travel with its asset, not through state shared by threads."""

from __future__ import annotations

import time

from core.context import Context
from core.engine import run_task
from core.events import Event
from core.tasks import create_task
from storage import executions as rec
from storage.inventory import upsert_account, upsert_asset
from storage.types import TaskSpec

ASSETS = 16


def test_every_record_names_its_own_assets_connection_error(ctx: Context) -> None:
    # Each asset fails to connect in its own words: nothing listens on its port (and none has a pinned key).
    with ctx.db.write() as s:
        for i in range(ASSETS):
            asset, _ = upsert_asset(s, f"down{i:02d}", address="127.0.0.1", port=1 + i, platform="linux")
            upsert_account(ctx.db, s, asset, "root", secret="Adm1n-pw-xx", privileged=True)
            upsert_account(ctx.db, s, asset, "alice", secret="Al1ce-pw-xx")
    create_task(ctx, TaskSpec(name="race", usernames=["alice"], assets=[f"down{i:02d}" for i in range(ASSETS)]))
    ctx.settings.concurrency = ASSETS

    def slow_display(_event: Event) -> None:
        time.sleep(0.002)  # a terminal or widget that takes a moment per event widens the race window

    info = run_task(ctx, "race", on_event=slow_display)
    records = rec.list_records(ctx.db, execution_id=info.id)
    assert len(records) == ASSETS
    wrong = [(r.asset_name, r.error) for r in records if r.status != "failed" or not r.error.startswith(f"{r.asset_name}:")]
    assert wrong == []
