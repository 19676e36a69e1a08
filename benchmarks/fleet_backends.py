"""Benchmark: the engine with its database on SQLite and on PostgreSQL, against the bare-SSH floor, in one run.

Same fleet and work as rotation_fleet.py (20 sandbox hosts x 10 accounts, random passwords, check after
change). Each round times, in rotating order: keyturn in-process on SQLite, keyturn in-process on a fresh
PostgreSQL database (local server, dropped at the end), and the paramiko floor. Between timings the other
vaults are brought up to what the hosts now hold, outside the clock.

    sudo .venv/bin/python benchmarks/fleet_backends.py [--hosts 20] [--accounts 10] [--rounds 2]

Not measured yet: PostgreSQL with 1 and 3 `keyturn worker` processes (workers are not implemented).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402
from rotation_fleet import build, run_floor, run_keyturn  # noqa: E402
from storage.inventory import account_secrets, get_account_row, get_asset_row, upsert_account  # noqa: E402
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


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    users = [f"u{i:02d}" for i in range(args.accounts)]
    pg.check_server()
    pg_name = pg.create_database()
    times: dict[str, list[float]] = {"sqlite": [], "postgresql": [], "floor": []}
    try:
        with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp:
            contexts: dict[str, Context] = {}
            for backend in ("sqlite", "postgresql"):
                env = {"KEYTURN_HOME": f"{tmp}/{backend}", "KEYTURN_CONFIG": f"{tmp}/none.toml"}
                if backend == "postgresql":
                    env["KEYTURN_DATABASE_URL"] = pg.sqlalchemy_url(pg_name)
                contexts[backend] = open_context(load_settings(env=env), operator="bench", source="benchmark")
            concurrency = contexts["sqlite"].settings.concurrency
            print(f"starting {args.hosts} sandbox hosts x {args.accounts} accounts ...", flush=True)
            with SandboxFleet(args.hosts, users=users) as fleet:
                for ctx in contexts.values():
                    build(ctx, fleet, users)
                order = ["sqlite", "postgresql", "floor"]
                for rnd in range(args.rounds):
                    for which in order[rnd % 3:] + order[:rnd % 3]:
                        if which == "floor":
                            elapsed, new = run_floor(fleet, users, concurrency)
                        else:
                            elapsed = run_keyturn(contexts[which])
                            new = held_passwords(contexts[which], fleet, users)
                        times[which].append(elapsed)
                        for name, ctx in contexts.items():
                            if name != which:
                                store_passwords(ctx, fleet, users, new)
                    print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
            for ctx in contexts.values():
                ctx.close()
    finally:
        pg.drop_database(pg_name)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"accounts={args.hosts * args.accounts} concurrency={concurrency} rounds={args.rounds} (medians)")
    for k in ("sqlite", "postgresql", "floor"):
        print(f"{k}_s={med[k]:.2f}  ratio to floor {med[k] / med['floor']:.2f}")
    print("postgresql with 1 / 3 workers: not measured (keyturn worker is not implemented yet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
