"""Benchmark: keyturn's engine on database targets against a bare-driver floor doing the same work.

200 roles on one private PostgreSQL and 200 users on one private MariaDB (tests/dbservers.py), random
passwords, check-after-change on. keyturn works one asset per thread, its accounts in sequence on one admin
connection; the floor does the same with the bare drivers (psycopg, PyMySQL) in the same process, two threads:
per server one admin connection, and per account the same statement keyturn sends (ALTER ROLE with a
client-computed SCRAM verifier; ALTER USER ... IDENTIFIED BY PASSWORD '*hash') and one login with the new
password, without TLS, as keyturn logs in to an asset whose tls is `disable` (the drivers' own default,
"prefer", would cost the floor a CA-bundle read per MariaDB login and a refused SSLRequest per PostgreSQL
one). No database, vault, events or trust probe on the floor's side. Rounds alternate which goes first.

    sudo .venv/bin/python benchmarks/db_rotation.py [--accounts 200] [--rounds 3]

Prints keyturn_s, floor_s and their ratio (target: <= 1.2), the CPU seconds of this process on each side
(the servers' own CPU is not in them; they move less with the machine's load than wall times do) and the
1-minute load average at the start and the end. Needs root (the servers run as postgres/mysql).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import pymysql  # noqa: E402
from psycopg import sql  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402
from core.drivers.mysql import native_hash  # noqa: E402
from core.drivers.postgresql import scram_verifier  # noqa: E402
from core.engine import run_task  # noqa: E402
from core.tasks import create_task  # noqa: E402
from storage.inventory import upsert_account, upsert_asset  # noqa: E402
from storage.types import TaskSpec  # noqa: E402
from tests.dbservers import MariaDBServer, PostgresServer  # noqa: E402


def _users(n: int) -> list[str]:
    return [f"bench{i:03d}" for i in range(n)]


def setup_servers(pg: PostgresServer, my: MariaDBServer, users: list[str]) -> dict[str, str]:
    """Create the roles and users with one known starting password each; returns user -> password."""
    pw = {u: "start-" + secrets.token_urlsafe(12) for u in users}
    with pg.admin() as conn:
        for u in users:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(u)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(u), sql.Literal(pw[u])))
    conn = my.admin()
    with conn.cursor() as cur:
        for u in users:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (u,))
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (u, pw[u]))
    conn.close()
    return pw


def build(ctx: Context, pg: PostgresServer, my: MariaDBServer, users: list[str], pw: dict[str, str]) -> None:
    """Two database assets with their admins and every account; one task over all of them."""
    with ctx.db.write() as s:
        for name, platform, server in (("pg", "postgresql", pg), ("maria", "mariadb", my)):
            asset, _ = upsert_asset(s, name, address="127.0.0.1", port=server.port, platform=platform)
            upsert_account(ctx.db, s, asset, server.admin_user, secret=server.admin_password, privileged=True)
            for u in users:
                upsert_account(ctx.db, s, asset, u, secret=pw[u])
    create_task(ctx, TaskSpec(name="bench", usernames=users, assets=["pg", "maria"], check_after_change=True))


def floor_pg(pg: PostgresServer, users: list[str]) -> None:
    """One admin connection; per role: ALTER ROLE with a client-computed verifier (as keyturn computes it), then one login."""
    with pg.admin() as conn:
        for u in users:
            new = secrets.token_urlsafe(18)
            verifier = scram_verifier(conn, u, new)  # keyturn's own computation: the floor pays what keyturn does
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(u), sql.Literal(verifier)))
            psycopg.connect(host="127.0.0.1", port=pg.port, user=u, password=new, dbname="postgres",
                            sslmode="disable").close()


def floor_my(my: MariaDBServer, users: list[str]) -> None:
    """One admin connection; per user: ALTER USER with the native hash, then one login."""
    conn = my.admin()
    with conn.cursor() as cur:
        for u in users:
            new = secrets.token_urlsafe(18)
            cur.execute("ALTER USER %s@'%%' IDENTIFIED BY PASSWORD %s", (u, native_hash(new)))
            pymysql.connect(host="127.0.0.1", port=my.port, user=u, password=new, ssl_disabled=True).close()
    conn.close()


def run_floor(pg: PostgresServer, my: MariaDBServer, users: list[str]) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) for the floor over both servers, one thread per server."""
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(floor_pg, pg, users), pool.submit(floor_my, my, users)]:
            f.result()
    return time.perf_counter() - start, time.process_time() - cpu


def run_keyturn(ctx: Context, expected: int) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) for one keyturn run of the task (every account must succeed)."""
    start, cpu = time.perf_counter(), time.process_time()
    info = run_task(ctx, "bench")
    took = time.perf_counter() - start, time.process_time() - cpu
    if info.succeeded != expected:
        raise SystemExit(f"keyturn run: {info.succeeded} of {expected} succeeded ({info.failed} failed, "
                         f"{info.unverified} unverified)")
    return took


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=200, help="roles on PostgreSQL and users on MariaDB (each)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    users = _users(args.accounts)
    pg, my = PostgresServer(), MariaDBServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"KEYTURN_HOME": f"{tmp}/home", "KEYTURN_CONFIG": f"{tmp}/config.toml"}
            ctx = open_context(load_settings(env=env), operator="bench", source="bench")
            pw = setup_servers(pg, my, users)
            build(ctx, pg, my, users, pw)
            run_keyturn(ctx, 2 * len(users))  # warm-up: caches, first connections
            ks: list[tuple[float, float]] = []
            fs: list[tuple[float, float]] = []
            load = os.getloadavg()[0]
            for r in range(args.rounds):
                order = [("k", lambda: run_keyturn(ctx, 2 * len(users))), ("f", lambda: run_floor(pg, my, users))]
                if r % 2:
                    order.reverse()
                for kind, fn in order:
                    (ks if kind == "k" else fs).append(fn())
                print(f"round {r + 1}: keyturn {ks[-1][0]:.2f}s ({ks[-1][1]:.2f}s CPU) floor {fs[-1][0]:.2f}s "
                      f"({fs[-1][1]:.2f}s CPU)", flush=True)
            k, f = statistics.median(x[0] for x in ks), statistics.median(x[0] for x in fs)
            kc, fc = statistics.median(x[1] for x in ks), statistics.median(x[1] for x in fs)
            print(f"accounts={2 * len(users)} keyturn_s={k:.2f} floor_s={f:.2f} ratio={k / f:.2f} (target <= 1.2) "
                  f"keyturn_cpu_s={kc:.2f} floor_cpu_s={fc:.2f} load={load:.1f}->{os.getloadavg()[0]:.1f}")
            ctx.close()
    finally:
        pg.close()
        my.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
