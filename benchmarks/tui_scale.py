"""How the app copes with a big database: start to a populated Overview, and the switch to Records.

Fills a fresh data directory with 1,000 tasks, 5,000 assets with 50,000 accounts, 2,000 executions and
100,000 change records (bulk INSERTs in one transaction; a sample of records holds real vault ciphertexts,
the rest NULL), then runs the app headless and times it. Targets: Overview under 1.5 s, Records under 0.5 s.

    .venv/bin/python benchmarks/tui_scale.py [--records 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402

OVERVIEW_TARGET = 1.5
RECORDS_TARGET = 0.5
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=timezone.utc)


def _ts(dt: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime stores (UTC, no offset), so ORM reads and range scans agree.
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(ctx: Context, *, tasks: int, assets: int, accounts_per_asset: int, executions: int, records: int,
         sealed: int) -> None:
    """Bulk-insert the whole data set in one transaction."""
    rnd = random.Random(1)
    now = _ts(NOW)
    with ctx.db.engine.begin() as conn:
        # Ten top nodes /dc0../dc9, each with racks; parents are the /dcN nodes (ids 1..10).
        nodes = [(i + 1, f"/dc{i}", f"dc{i}", None) for i in range(10)]
        nodes += [(11 + i, f"/dc{i // 5}/rack{i % 5}", f"rack{i % 5}", 1 + i // 5) for i in range(50)]
        conn.exec_driver_sql("INSERT INTO node (id, path, name, parent_id) VALUES (?, ?, ?, ?)", nodes)
        conn.exec_driver_sql(
            "INSERT INTO asset (id, name, address, port, platform, active, comment, created_at, updated_at) "
            "VALUES (?, ?, ?, 22, 'linux', 1, '', ?, ?)",
            [(i + 1, f"host-{i:05d}", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", now, now)
             for i in range(assets)])
        conn.exec_driver_sql("INSERT INTO asset_node (asset_id, node_id) VALUES (?, ?)",
                             [(i + 1, 11 + i % 50) for i in range(assets)])
        users = ["root", "app", "deploy", "backup", "svc", "ops", "web", "db", "mon", "ci"][:accounts_per_asset]
        conn.exec_driver_sql(
            "INSERT INTO account (id, asset_id, username, secret_type, privileged, can_change, version, last_status, "
            "created_at) VALUES (?, ?, ?, 'password', ?, 1, 1, 'success', ?)",
            [(a * len(users) + u + 1, a + 1, name, int(name == "root"), now)
             for a in range(assets) for u, name in enumerate(users)])
        conn.exec_driver_sql(
            "INSERT INTO change_secret_task (id, name, description, usernames, secret_strategy, secret_type, "
            "ssh_key_strategy, key_algorithm, rules, params, interval_hours, cron, check_after_change, active, "
            "recipients, created_at, updated_at) VALUES (?, ?, '', ?, 'random', 'password', 'replace-ours', 'ed25519', "
            "'{}', '{}', ?, NULL, 1, 1, '[]', ?, ?)",
            [(t + 1, f"task-{t:04d}", json.dumps(users[1 + t % 3:2 + t % 3]), 24 if t % 2 else None, now, now)
             for t in range(tasks)])
        conn.exec_driver_sql("INSERT INTO task_node (task_id, node_id) VALUES (?, ?)",
                             [(t + 1, 11 + t % 50) for t in range(tasks)])
        per_exec = records // executions
        ex_rows, rec_rows = [], []
        rid = 0
        for e in range(executions):
            task = e % tasks + 1
            started = NOW - timedelta(minutes=int(60 * 24 * 60 * e / executions))
            statuses = [rnd.choices(("success", "failed", "unverified"), (90, 7, 3))[0] for _ in range(per_exec)]
            ok, bad, unv = statuses.count("success"), statuses.count("failed"), statuses.count("unverified")
            ex_rows.append((e + 1, task, f"task-{task - 1:04d}", "schedule", "success" if ok == per_exec else "partial",
                            _ts(started), _ts(started + timedelta(seconds=30)), per_exec, ok, bad, unv))
            for i, status in enumerate(statuses):
                rid += 1
                asset = (e * per_exec + i) % assets
                rec_rows.append((rid, e + 1, task, f"task-{task - 1:04d}", asset * len(users) + 1 + i % len(users),
                                 asset + 1, f"host-{asset:05d}", users[i % len(users)], status,
                                 "" if status == "success" else "sudo: a password is required", _ts(started)))
        conn.exec_driver_sql(
            "INSERT INTO execution (id, task_id, task_name, trigger, status, operator, started_at, finished_at, "
            "snapshot, total, succeeded, failed, unverified, log, mail_error, hostname) "
            "VALUES (?, ?, ?, ?, ?, 'bench', ?, ?, '{}', ?, ?, ?, ?, '', '', '')", ex_rows)
        conn.exec_driver_sql(
            "INSERT INTO change_record (id, execution_id, task_id, task_name, account_id, asset_id, asset_name, "
            "username, secret_type, status, error, attempt, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'password', ?, ?, 1, ?)", rec_rows)
    # A sample of records holds real ciphertexts bound to their row, like the engine writes them.
    from sqlmodel import col, select

    from storage.tables import ChangeRecord

    with ctx.db.write() as s:
        for rec in s.exec(select(ChangeRecord).order_by(col(ChangeRecord.id).desc()).limit(sealed)).all():
            ctx.db.seal(rec, "old_secret_enc", "old-" + rec.asset_name)
            ctx.db.seal(rec, "new_secret_enc", "new-" + rec.asset_name)


async def measure(ctx: Context) -> tuple[float, float, int, int]:
    """Seconds from app start to a populated Overview, and from switch_mode to a filled Records table."""
    from textual.widgets import DataTable

    from tui.app import KeyturnApp

    start = time.perf_counter()
    app = KeyturnApp(ctx, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.screen.query("#attention-table") or not app.screen.query_one("#attention-table", DataTable).row_count:
            await pilot.pause(0.01)
        overview = time.perf_counter() - start
        attention = app.screen.query_one("#attention-table", DataTable).row_count
        t0 = time.perf_counter()
        await app.switch_mode("records")
        while not app.screen.query("#records-table") or not app.screen.query_one("#records-table", DataTable).row_count:
            await pilot.pause(0.01)
        records = time.perf_counter() - t0
        rows = app.screen.query_one("#records-table", DataTable).row_count
    return overview, records, attention, rows


def main() -> int:
    """Fill, measure, print, and exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--executions", type=int, default=2_000)
    parser.add_argument("--keep", help="build the database in this directory and keep it")
    args = parser.parse_args()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    settings = load_settings(env={"KEYTURN_HOME": str(home / "home"), "KEYTURN_CONFIG": str(home / "none.toml")})
    settings.reconcile_on_start = False  # the benchmark hosts do not exist
    try:
        ctx = open_context(settings, operator="bench", source="benchmark")
        t = time.perf_counter()
        fill(ctx, tasks=args.tasks, assets=args.accounts // 10, accounts_per_asset=10, executions=args.executions,
             records=args.records, sealed=200)
        print(f"filled {args.records} records, {args.accounts} accounts, {args.tasks} tasks, "
              f"{args.executions} executions in {time.perf_counter() - t:.1f}s")
        ctx.close()
        t = time.perf_counter()
        ctx = open_context(settings, operator="bench", source="benchmark")
        opened = time.perf_counter() - t
        overview, records, attention, rows = asyncio.run(measure(ctx))
        ctx.close()
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    ok_o, ok_r = overview < OVERVIEW_TARGET, records < RECORDS_TARGET
    print(f"open database (schema check, key, vault): {opened:.3f}s")
    print(f"start -> Overview populated ({attention} attention rows): {overview:.3f}s "
          f"(target < {OVERVIEW_TARGET}s) {'PASS' if ok_o else 'FAIL'}")
    print(f"switch to Records, table filled ({rows} rows): {records:.3f}s "
          f"(target < {RECORDS_TARGET}s) {'PASS' if ok_r else 'FAIL'}")
    return 0 if ok_o and ok_r else 1


if __name__ == "__main__":
    raise SystemExit(main())
