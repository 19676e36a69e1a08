"""Benchmark: SQLite and PostgreSQL in-process, PostgreSQL with 1 and 3 `keyturn worker` processes, and the
bare-SSH floor, in one run.

Same fleet and work as rotation_fleet.py (20 sandbox hosts x 10 accounts, random passwords, check after
change). Each round times, in rotating order: keyturn in-process on SQLite, keyturn in-process on a fresh
PostgreSQL database (local server, dropped at the end), the same database with the run queued for 1 and for
3 worker processes (`keyturn worker`, started before the clock, each with the default concurrency; the time
runs from queueing to the execution's end as `task run --workers` sees it), and the paramiko floor. Between
timings the other vaults are brought up to what the hosts now hold, outside the clock.

Besides wall time, each variant reports keyturn's own CPU seconds per account (the benchmark process for
in-process runs, the worker processes for worker runs) and, on PostgreSQL, the database work per account
from pg_stat_database (commits, rows inserted + updated).

    sudo .venv/bin/python benchmarks/fleet_backends.py [--hosts 20] [--accounts 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402
from rotation_fleet import build, run_floor, run_keyturn  # noqa: E402
from storage.inventory import account_secrets, get_account_row, get_asset_row, upsert_account  # noqa: E402
from storage.keyfile import key_path  # noqa: E402
from tests import pg  # noqa: E402
from tests.sandbox import SandboxFleet  # noqa: E402


def held_passwords(ctx: Context, fleet: SandboxFleet, users: list[str]) -> dict[str, dict[str, str]]:
    """What the vault of ctx says each account holds now."""
    out: dict[str, dict[str, str]] = {}
    with ctx.db.read() as s:
        for h in fleet:
            out[h.name] = {u: account_secrets(ctx.db, get_account_row(s, h.name, u).id).secret for u in users}  # type: ignore[misc]
    return out


def store_passwords(ctx: Context, fleet: SandboxFleet, users: list[str], new: dict[str, dict[str, str]]) -> None:
    """Make ctx's vault hold these passwords (the hosts already do)."""
    with ctx.db.write() as s:
        for h in fleet:
            asset = get_asset_row(s, h.name)
            for u in users:
                upsert_account(ctx.db, s, asset, u, secret=new[h.name][u])


def pg_counters(dbname: str) -> tuple[int, int]:
    """(commits, rows inserted + updated) of one database so far, from pg_stat_database."""
    import psycopg

    with psycopg.connect(pg.SERVER, autocommit=True) as conn:
        time.sleep(1.2)  # backends flush their statistics about once a second
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database WHERE datname = %s",
                           (dbname,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def start_workers(count: int, env: dict[str, str], logdir: Path) -> list[subprocess.Popen[bytes]]:
    """count `keyturn worker` processes, polling often so the clock does not measure their idle sleep.

    Returns once every one of them logged that it started (imports and the vault opened, outside the clock).
    """
    logs = [logdir / f"worker-{i}-{time.monotonic_ns()}.log" for i in range(count)]
    procs = [subprocess.Popen([sys.executable, "-m", "tui", "worker", "--id", f"bench-w{i}", "--poll", "0.1"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
             for i, log in enumerate(logs)]
    deadline = time.monotonic() + 120
    while not all(log.exists() and b" started (" in log.read_bytes() for log in logs):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit("a worker did not start:\n" + "\n".join(log.read_text() for log in logs))
        time.sleep(0.1)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM and wait (a worker finishes its units in hand first)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=120)


def run_queued(ctx: Context) -> float:
    """Time one run queued for the workers, from queueing to its end; it must fully succeed."""
    from core.workers import follow, queue_run

    t0 = time.perf_counter()
    execution_id = queue_run(ctx, "bench", trigger="manual")
    QUEUE_TIMES.append(time.perf_counter() - t0)
    info = follow(ctx, execution_id, poll=0.05)
    elapsed = time.perf_counter() - t0
    if info.succeeded != info.total:
        raise SystemExit(f"queued run {info.id} was not a full success: {info.status} "
                         f"({info.succeeded}/{info.total})")
    return elapsed


QUEUE_TIMES: list[float] = []  # queue_run alone: targets, every record sealed and committed, units, lock hand-over
VARIANTS = ("sqlite", "postgresql", "pg_1_worker", "pg_3_workers", "floor")


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    users = [f"u{i:02d}" for i in range(args.accounts)]
    accounts = args.hosts * args.accounts
    pg.check_server()
    pg_name = pg.create_database()
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}
    db_work: dict[str, list[tuple[int, int]]] = {k: [] for k in VARIANTS}
    try:
        with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp:
            contexts: dict[str, Context] = {}
            envs: dict[str, dict[str, str]] = {}
            for backend in ("sqlite", "postgresql"):
                env = {"KEYTURN_HOME": f"{tmp}/{backend}", "KEYTURN_CONFIG": f"{tmp}/none.toml"}
                if backend == "postgresql":
                    env["KEYTURN_DATABASE_URL"] = pg.sqlalchemy_url(pg_name)
                envs[backend] = env
                contexts[backend] = open_context(load_settings(env=env), operator="bench", source="benchmark")
            # The workers' machine: its own data directory with a copy of the PostgreSQL vault's master key.
            whome = Path(tmp) / "worker-home"
            whome.mkdir(mode=0o700)
            shutil.copy2(key_path(Path(envs["postgresql"]["KEYTURN_HOME"])), key_path(whome))
            worker_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
            worker_env.update(envs["postgresql"], KEYTURN_HOME=str(whome))
            concurrency = contexts["sqlite"].settings.concurrency
            print(f"starting {args.hosts} sandbox hosts x {args.accounts} accounts ...", flush=True)
            with SandboxFleet(args.hosts, users=users) as fleet:
                for ctx in contexts.values():
                    build(ctx, fleet, users)
                order = list(VARIANTS)
                for rnd in range(args.rounds):
                    for which in order[rnd % len(order):] + order[:rnd % len(order)]:
                        vault = "sqlite" if which == "sqlite" else "postgresql"
                        if which == "floor":
                            c0 = time.process_time()
                            elapsed, new = run_floor(fleet, users, concurrency)
                            cpu[which].append(time.process_time() - c0)
                        else:
                            procs = (start_workers(3 if which == "pg_3_workers" else 1, worker_env, Path(tmp))
                                     if which.startswith("pg_") else [])
                            try:
                                if vault == "postgresql":
                                    contexts[vault].db.engine.dispose()  # idle backends flush their statistics on exit
                                    before = pg_counters(pg_name)
                                c0 = time.process_time() if not procs else cpu_of([p.pid for p in procs])
                                if procs:
                                    elapsed = run_queued(contexts[vault])
                                    cpu[which].append(cpu_of([p.pid for p in procs]) - c0)
                                else:
                                    elapsed = run_keyturn(contexts[vault])
                                    cpu[which].append(time.process_time() - c0)
                            finally:
                                stop_workers(procs)
                            if vault == "postgresql":
                                contexts[vault].db.engine.dispose()
                                after = pg_counters(pg_name)
                                db_work[which].append((after[0] - before[0], after[1] - before[1]))
                            new = held_passwords(contexts[vault], fleet, users)
                        times[which].append(elapsed)
                        for name, ctx in contexts.items():
                            if name != vault:
                                store_passwords(ctx, fleet, users, new)
                    print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
            for ctx in contexts.values():
                ctx.close()
    finally:
        pg.drop_database(pg_name)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"accounts={accounts} concurrency={concurrency} per process, rounds={args.rounds} (medians)")
    print(f"{'variant':<14} {'wall_s':>7} {'x floor':>8} {'cpu ms/acct':>12} {'commits/acct':>13} {'rows/acct':>10}")
    for k in VARIANTS:
        work = db_work[k]
        commits = f"{statistics.median(w[0] for w in work) / accounts:.2f}" if work else "-"
        rows = f"{statistics.median(w[1] for w in work) / accounts:.2f}" if work else "-"
        print(f"{k:<14} {med[k]:>7.2f} {med[k] / med['floor']:>8.2f} {statistics.median(cpu[k]) * 1000 / accounts:>12.1f} "
              f"{commits:>13} {rows:>10}")
    print(f"queueing (part of the worker runs' wall time): {statistics.median(QUEUE_TIMES) * 1000 / accounts:.2f} ms "
          "per account (targets, records sealed and committed in one transaction, units, lock hand-over)")
    print("commits include the workers' idle polls (--poll 0.1: about ten a second each); rows are "
          "inserted + updated rows, polls write none")
    print("cpu: keyturn's own process(es) only (the floor: its paramiko client); sshd, sudo, chpasswd and the "
          "database server are not in it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
