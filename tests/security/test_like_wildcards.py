"""Finding 9: `_` and `%` in a node path or a search are literal, never LIKE wildcards."""

from __future__ import annotations

from core.context import Context
from core.targets import preview
from storage.inventory import list_assets, upsert_account, upsert_asset
from storage.queries import count_assets, node_subtree_ids, overview_stats
from storage.types import TaskSpec


def _inventory(ctx: Context) -> None:
    db = ctx.db
    with db.write() as s:
        ours, _ = upsert_asset(s, "db1", address="10.0.0.1", nodes=["/prod_db/finance"])
        upsert_account(db, s, ours, "app", secret="x")
        # `_` as a wildcard would put this asset under /prod_db; `%` would put it under /100%.
        theirs, _ = upsert_asset(s, "hr1", address="10.0.0.2", nodes=["/prodXdb/finance", "/100x/y"])
        upsert_account(db, s, theirs, "app", secret="x")
        pct, _ = upsert_asset(s, "pc1", address="10.0.0.3", nodes=["/100%/y"])
        upsert_account(db, s, pct, "app", secret="x")


def _covered(ctx: Context, node: str) -> list[str]:
    """Assets a task on node would cover, changed or excluded (no login account here: excluded)."""
    result = preview(ctx, TaskSpec(name="t", usernames=["app"], nodes=[node]))
    return sorted({t.asset_name for t in result.targets} | {e.asset_name for e in result.excluded})


def test_a_task_on_an_underscore_node_covers_only_that_subtree(ctx: Context) -> None:
    _inventory(ctx)
    assert _covered(ctx, "/prod_db") == ["db1"]
    assert _covered(ctx, "/100%") == ["pc1"]


def test_listings_and_counts_take_node_paths_and_searches_literally(ctx: Context) -> None:
    _inventory(ctx)
    assert [a.name for a in list_assets(ctx.db, node="/prod_db")] == ["db1"]
    assert count_assets(ctx.db, node_ids=node_subtree_ids(ctx.db, "/prod_db")) == 1
    assert [a.name for a in list_assets(ctx.db, search="10.0.0_")] == []
    assert [a.name for a in list_assets(ctx.db, search="%")] == []


def test_covered_assets_in_the_overview_escape_task_node_paths(ctx: Context) -> None:
    from datetime import datetime, timezone

    from core.tasks import create_task

    _inventory(ctx)
    create_task(ctx, TaskSpec(name="t", usernames=["app"], nodes=["/prod_db"]))
    assert overview_stats(ctx.db, datetime.now(timezone.utc)).assets_covered == 1
