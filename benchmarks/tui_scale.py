"""How the app copes with a big database: start to a populated Overview, the switch to Records, and how long
the UI thread is ever kept from its event loop while modes switch (issue 12: reads run in thread workers).

Fills a fresh data directory with 1,000 tasks, 10,000 assets with 100,000 accounts, 10,000 executions and
1,000,000 change records (bulk INSERTs in one transaction, in a child process so its lists do not count
towards the app's memory; a sample of records holds real vault ciphertexts, the rest NULL), then runs the app
headless (App.run_test) and times it.

Targets: Overview populated < 1 s after start, Records filled < 0.3 s after the switch, longest UI-thread
stall while switching modes < 50 ms. Peak RSS of the measuring process (the app) is printed.

The stall probe is an asyncio task on the app's own event loop: it sleeps 5 ms at a time and records how much
later than asked it woke up. Anything that holds the UI thread (a query, building or rendering a table, the
GIL held by a worker thread for longer than the switch interval) shows up as lateness.

    .venv/bin/python benchmarks/tui_scale.py [--records 1000000] [--accounts 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402

OVERVIEW_TARGET = 1.0
RECORDS_TARGET = 0.3
STALL_TARGET = 0.050
PROBE = 0.005
MODES = ("tasks", "history", "records", "inventory", "audit", "overview")
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
            # Oldest first, so ids grow with time as they do in a real database (the newest record of an
            # account is also its highest id, which the attention list relies on).
            started = NOW - timedelta(minutes=int(60 * 24 * 60 * (executions - 1 - e) / executions))
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


class StallProbe:
    """Lateness of a 5 ms sleep on the app's event loop: how long the UI thread was kept from it (wall), and
    how much CPU the UI thread itself burnt in that longest gap (its own work, as opposed to waiting for a core
    or the GIL on a loaded machine)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(PROBE)
            late = time.perf_counter() - t - PROBE
            if late > self.worst:
                self.worst = late
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - cpu)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> tuple[float, float]:
        """The worst lateness and the most UI-thread CPU in one gap since the last take."""
        worst, self.worst = self.worst, 0.0
        cpu, self.worst_cpu = self.worst_cpu, 0.0
        return worst, cpu

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def cpu_reference(runs: int = 40) -> tuple[float, float]:
    """UI-thread CPU time of a fixed piece of pure Python (about 2 ms on an idle core), run `runs` times: its
    fastest and its median. On a shared, loaded VM the same work takes more thread CPU time (cores shared with
    other guests and hyperthreads), so the ratio says how far this run's CPU figures are inflated by the load."""
    times = []
    for _ in range(runs):
        t = time.thread_time()
        total = 0
        for i in range(40_000):
            total += i * i
        times.append(time.thread_time() - t)
    times.sort()
    return times[0], times[len(times) // 2]


async def measure(ctx: Context, rounds: int) -> dict[str, object]:
    """Start to a populated Overview; switch to a filled Records table; the worst stall per mode switch."""
    from textual.widgets import DataTable

    from tui.app import KeyturnApp

    def filled(table_id: str) -> bool:
        tables = app.screen.query(f"#{table_id}")
        return bool(tables) and tables.first(DataTable).row_count > 0

    async def built_ahead() -> float:
        """Seconds until the app has built the other modes' screens while idle (tui/app.py _prebuild_next)."""
        t0 = time.perf_counter()
        while not getattr(app, "prebuilt", True):
            await asyncio.sleep(0.01)
        return time.perf_counter() - t0

    async def visit(mode: str) -> tuple[float, tuple[float, float]]:
        """Switch to a mode and wait for its page: seconds taken, and the probe's worst gap meanwhile."""
        probe.take()
        t0 = time.perf_counter()
        await app.switch_mode(mode)
        await app.reads.settled()
        await pilot.pause()
        return time.perf_counter() - t0, probe.take()

    start = time.perf_counter()
    app = KeyturnApp(ctx, clock=lambda: NOW)
    out: dict[str, object] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        probe = StallProbe()
        probe.start()
        # Shown: both halves of the Overview (numbers, and the attention table) are on screen.
        while not (filled("attention-table") and not app.reads.pending):
            await asyncio.sleep(0.002)
        out["overview"] = time.perf_counter() - start
        out["attention"] = app.screen.query_one("#attention-table", DataTable).row_count
        out["stall_start"] = probe.take()
        # The app composes the other modes' screens while idle (tui/app.py _prebuild_next): a person reading the
        # Overview gives it that time. Its stalls count like any other.
        out["prebuild"] = await built_ahead()
        out["stall_prebuild"] = probe.take()
        t0 = time.perf_counter()
        await app.switch_mode("records")
        while not (filled("records-table") and not app.reads.pending):
            await asyncio.sleep(0.002)
        out["records"] = time.perf_counter() - t0
        out["rows"] = app.screen.query_one("#records-table", DataTable).row_count
        out["stall_records"] = probe.take()
        # Every mode, `rounds` times round: the first round mounts each screen, later ones reload it.
        switches: list[tuple[int, str, float, tuple[float, float]]] = []
        for r in range(rounds):
            for mode in MODES:
                switches.append((r, mode, *await visit(mode)))
        out["switches"] = switches
        # The terminal shrinks to 80x24 (the person moved to a smaller window). The shown screen is laid out again
        # at once (Textual's own resize); the others again while idle (tui/app.py on_resize); then every mode is
        # visited once at the new size.
        probe.take()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        out["stall_resize"] = probe.take()
        out["rebuild"] = await built_ahead()
        out["stall_rebuild"] = probe.take()
        out["resized"] = [(mode, *await visit(mode)) for mode in MODES]
        probe.stop()
        await pilot.pause()
    return out


def fill_child(home: Path, args: argparse.Namespace) -> None:
    """Fill the data directory in a child process (its row lists must not count as the app's memory)."""
    cmd = [sys.executable, __file__, "--fill-only", "--keep", str(home), "--records", str(args.records),
           "--accounts", str(args.accounts), "--tasks", str(args.tasks), "--executions", str(args.executions)]
    subprocess.run(cmd, check=True)


def settings_for(home: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(env={"KEYTURN_HOME": str(home / "home"), "KEYTURN_CONFIG": str(home / "none.toml")})
    settings.reconcile_on_start = False  # the benchmark hosts do not exist
    return settings


def main() -> int:
    """Fill (unless --keep names a filled directory), measure, print, and exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="times round every mode for the stall figure")
    parser.add_argument("--keep", help="build the database in this directory (or reuse it) and keep it")
    parser.add_argument("--fill-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    if args.fill_only:
        ctx = open_context(settings_for(home), operator="bench", source="benchmark")
        t = time.perf_counter()
        fill(ctx, tasks=args.tasks, assets=args.accounts // 10, accounts_per_asset=10, executions=args.executions,
             records=args.records, sealed=200)
        ctx.close()
        print(f"filled {args.records} records, {args.accounts} accounts, {args.tasks} tasks, "
              f"{args.executions} executions in {time.perf_counter() - t:.1f}s")
        return 0
    try:
        if not (home / "home" / "keyturn.db").exists():
            fill_child(home, args)
        else:
            print(f"reusing {home}")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        ctx = open_context(settings_for(home), operator="bench", source="benchmark")
        opened = time.perf_counter() - t
        reference = cpu_reference()
        out = asyncio.run(measure(ctx, args.rounds))
        ctx.close()
        after = cpu_reference()
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    switches: list[tuple[int, str, float, tuple[float, float]]] = out["switches"]  # type: ignore[assignment]
    # The target is about switching modes (and the idle composition a person may type into); the stall before
    # the first screen is shown (its own compose and paint) is printed apart, under start -> Overview.
    resized: list[tuple[str, float, tuple[float, float]]] = out["resized"]  # type: ignore[assignment]
    gaps: list[tuple[float, float]] = ([out["stall_prebuild"], out["stall_records"], out["stall_rebuild"]]  # type: ignore[list-item]
                                       + [s[3] for s in switches] + [s[2] for s in resized])
    stall = max(g[0] for g in gaps)
    stall_cpu = max(g[1] for g in gaps)
    later = max((s[3][0] for s in switches if s[0] > 0), default=0.0)
    ok_o = float(out["overview"]) < OVERVIEW_TARGET  # type: ignore[arg-type]
    ok_r = float(out["records"]) < RECORDS_TARGET  # type: ignore[arg-type]
    ok_s = stall < STALL_TARGET
    print(f"open database (schema check, key, vault): {opened:.3f}s")
    print(f"start -> Overview populated ({out['attention']} attention rows): {out['overview']:.3f}s "
          f"(target < {OVERVIEW_TARGET}s) {'PASS' if ok_o else 'FAIL'}")
    start_wall, start_cpu = out["stall_start"]  # type: ignore[misc]
    rec_wall, rec_cpu = out["stall_records"]  # type: ignore[misc]
    print(f"  longest UI stall from start to the populated Overview {start_wall * 1000:.1f} ms (UI-thread CPU in one "
          f"gap at most {start_cpu * 1000:.1f} ms); during the switch to Records {rec_wall * 1000:.1f} ms "
          f"({rec_cpu * 1000:.1f} ms)")
    pre_wall, pre_cpu = out["stall_prebuild"]  # type: ignore[misc]
    print(f"other modes' screens composed while idle in {out['prebuild']:.3f}s, longest UI stall meanwhile "
          f"{pre_wall * 1000:.1f} ms (UI-thread CPU in one gap at most {pre_cpu * 1000:.1f} ms)")
    print(f"switch to Records, table filled ({out['rows']} rows): {out['records']:.3f}s "
          f"(target < {RECORDS_TARGET}s) {'PASS' if ok_r else 'FAIL'}")
    for r, mode, took, (worst, cpu) in switches:
        print(f"  round {r + 1} {mode:<9} loaded in {took:.3f}s, longest UI stall {worst * 1000:.1f} ms "
              f"(UI-thread CPU in one gap at most {cpu * 1000:.1f} ms)")
    rs_wall, rs_cpu = out["stall_resize"]  # type: ignore[misc]
    rb_wall, rb_cpu = out["stall_rebuild"]  # type: ignore[misc]
    print(f"resized to 80x24: the shown screen laid out again with a longest UI stall of {rs_wall * 1000:.1f} ms "
          f"({rs_cpu * 1000:.1f} ms CPU; Textual's own resize); the other screens again while idle in "
          f"{out['rebuild']:.3f}s, longest UI stall meanwhile {rb_wall * 1000:.1f} ms ({rb_cpu * 1000:.1f} ms CPU)")
    for mode, took, (worst, cpu) in resized:
        print(f"  80x24 {mode:<9} loaded in {took:.3f}s, longest UI stall {worst * 1000:.1f} ms "
              f"(UI-thread CPU in one gap at most {cpu * 1000:.1f} ms)")
    print(f"longest UI-thread stall: {stall * 1000:.1f} ms over the idle composition, {len(switches) + 1} switches, "
          f"the building again after the resize and {len(resized)} switches at 80x24; "
          f"{later * 1000:.1f} ms once every screen exists (target < {STALL_TARGET * 1000:.0f} ms) "
          f"{'PASS' if ok_s else 'FAIL'}")
    first = [s[3][1] for s in switches if s[0] == 0]
    again = [s[3][1] for s in switches if s[0] > 0]
    print(f"most UI-thread CPU inside one gap: {stall_cpu * 1000:.1f} ms (the stall an idle machine would see); "
          f"first visits of a mode: {max(first, default=0) * 1000:.1f} ms, modes visited again: "
          f"{max(again, default=0) * 1000:.1f} ms")
    fastest, median = min(reference[0], after[0]), max(reference[1], after[1])
    print(f"CPU reference (fixed pure-Python loop, before and after): fastest {fastest * 1000:.2f} ms, median "
          f"{median * 1000:.2f} ms: this run's CPU figures are about {median / fastest:.1f}x what an idle core gives")
    print(f"load average while measuring: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"peak RSS of the app process: {peak:.0f} MiB (interpreter and imports before opening: {rss_before:.0f} MiB)")
    return 0 if ok_o and ok_r and ok_s else 1


if __name__ == "__main__":
    raise SystemExit(main())
