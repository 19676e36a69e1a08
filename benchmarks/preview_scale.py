"""Target preview at scale: `core.targets.preview` of a task over 3,000 assets (2 accounts each).

Prints the preview's seconds (median of the rounds) and its ratio to a baseline measured in the same run on
the same database: one plain SELECT of every account joined to its asset, which is the least any preview has
to read. The query count is asserted in tests/unit/test_targets.py; the time only lives here.
Run: .venv/bin/python benchmarks/preview_scale.py [ASSETS] [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402  (after the path is set)

from core.config import load_settings  # noqa: E402
from core.context import open_context  # noqa: E402
from core.targets import preview  # noqa: E402
from storage.inventory import ensure_node  # noqa: E402
from storage.tables import Account, Asset, AssetNode  # noqa: E402
from storage.types import TaskSpec  # noqa: E402


def main() -> None:
    """Build the fleet once, then time preview and the baseline alternately."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        env = {"KEYTURN_HOME": f"{tmp}/home", "KEYTURN_CONFIG": f"{tmp}/config.toml"}
        ctx = open_context(load_settings(env=env), operator="bench")
        with ctx.db.write() as s:
            node, _ = ensure_node(s, "/fleet/a")
            assets = [Asset(name=f"h{i:05d}", address=f"10.1.{i // 250}.{i % 250}") for i in range(n)]
            s.add_all(assets)
            s.flush()
            s.add_all([AssetNode(asset_id=a.id, node_id=node.id) for a in assets])
            s.add_all([Account(asset_id=a.id, username="root", privileged=True) for a in assets])
            s.add_all([Account(asset_id=a.id, username="app") for a in assets])
        spec = TaskSpec(name="big", usernames=["app", "root"], nodes=["/fleet"])
        ours, base = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            preview(ctx, spec)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            with ctx.db.read() as s:
                s.execute(text("SELECT account.*, asset.* FROM account JOIN asset ON asset.id = account.asset_id")).all()
            base.append(time.perf_counter() - started)
        ctx.close()
    p, b = statistics.median(ours), statistics.median(base)
    print(f"preview of {n} assets: {p:.3f} s; plain SELECT of the same rows: {b:.3f} s; ratio {p / b:.1f}x")


if __name__ == "__main__":
    main()
