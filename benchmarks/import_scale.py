"""Import scale: a 100,000-line inventory (CSV, then Ansible INI) into a fresh database, in one transaction.

For each format a child process (so ru_maxrss is that import's own peak) opens a fresh keyturn data directory,
parses the file and applies it exactly as `keyturn import` does, then imports the same file again (nothing
changes: every secret is decrypted and compared). It prints the seconds spent parsing and writing, the CPU
seconds of the whole child (the machine is shared: wall time moves with the others' load, CPU time much
less), the peak RSS, and the ratios to the targets (15 s, 200 MB). A floor measured in the same run puts the
figures in proportion: the same file read with the csv module or split into words, and the same rows
inserted with bare sqlite3 executemany in one transaction (no checks, no vault, no ORM).

Run: .venv/bin/python benchmarks/import_scale.py [LINES] [--postgresql]
(--postgresql: also import into a fresh database on the local PostgreSQL server; see tests/pg.py.)
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 15.0
TARGET_MB = 200.0


def write_csv(path: Path, lines: int) -> None:
    """One asset per 4 lines: a privileged root account and three users, 10 groups of nodes."""
    with path.open("w") as f:
        f.write("asset,address,port,platform,nodes,username,secret,privileged\n")
        for i in range(lines - 1):
            a = i // 4
            if i % 4 == 0:
                f.write(f"h{a},10.{a // 65536 % 256}.{a // 256 % 256}.{a % 256},22,linux,/bench/g{a % 10},root,"
                        f"Pw-root-{a}-x9,true\n")
            else:
                f.write(f"h{a},,,,,u{i % 4},Pw-u{i % 4}-{a}-x9,false\n")


def write_ini(path: Path, lines: int) -> None:
    """One host line per asset in 10 groups, with ansible_user/ansible_password (the privileged account)."""
    with path.open("w") as f:
        per_group = (lines - 20) // 10
        n = 0
        for g in range(10):
            f.write(f"[g{g}]\n")
            for _ in range(per_group):
                f.write(f"h{n} ansible_host=10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256} ansible_user=root "
                        f"ansible_password=Pw-root-{n}-x9\n")
                n += 1
        f.write("[bench:children]\n" + "".join(f"g{g}\n" for g in range(8)))


def _usage() -> tuple[float, float]:
    """(CPU seconds so far, peak RSS in MB) of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def child(fmt: str, path: str, home: str, database_url: str) -> None:
    """Parse and apply one file into a fresh data directory, then apply it again; print the figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from core.config import load_settings
    from core.context import open_context
    from core.importer import apply_inventory, parse_inventory

    env = {"KEYTURN_HOME": home, "KEYTURN_CONFIG": os.path.join(home, "none.toml")}
    if database_url:
        env["KEYTURN_DATABASE_URL"] = database_url
    ctx = open_context(load_settings(env=env), operator="bench")
    t0 = time.perf_counter()
    inv = parse_inventory(Path(path), fmt)
    t1 = time.perf_counter()
    summary = apply_inventory(ctx.db, inv)
    t2 = time.perf_counter()
    cpu, peak = _usage()
    del inv
    again = apply_inventory(ctx.db, parse_inventory(Path(path), fmt))
    t3 = time.perf_counter()
    ctx.close()
    print(json.dumps({"parse": t1 - t0, "write": t2 - t1, "total": t2 - t0, "cpu": cpu, "peak_mb": peak,
                      "again": t3 - t2, "again_changed": again.changed,
                      "assets": summary.assets_created, "accounts": summary.accounts_created}))


def floor(fmt: str, path: str, db_path: str) -> None:
    """The least any importer does: read the rows and insert them with bare sqlite3 in one transaction."""
    t0 = time.perf_counter()
    rows: list[tuple[str, ...]] = []
    with open(path, newline="") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            next(reader)
            rows = [tuple(r) for r in reader]
        else:
            # host lines only: "h1 ansible_host=... ansible_user=... ansible_password=..." as plain words
            rows = [tuple(w.partition("=")[2] or w for w in words) for words in map(str.split, f) if len(words) == 4]
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE asset (id INTEGER PRIMARY KEY, name TEXT UNIQUE, address TEXT)")
    con.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, asset_id INTEGER, username TEXT, secret BLOB, "
                "UNIQUE (asset_id, username))")
    con.execute("BEGIN")
    ids: dict[str, int] = {}
    assets, accounts = [], []
    for r in rows:
        if r[0] not in ids:
            ids[r[0]] = len(ids) + 1
            assets.append((ids[r[0]], r[0], r[1]))
        user, secret = (r[5], r[6]) if fmt == "csv" else (r[2], r[3])
        accounts.append((len(accounts) + 1, ids[r[0]], user, secret.encode()))
    con.executemany("INSERT INTO asset VALUES (?, ?, ?)", assets)
    con.executemany("INSERT INTO account VALUES (?, ?, ?, ?)", accounts)
    con.execute("COMMIT")
    con.close()
    cpu, peak = _usage()
    print(json.dumps({"total": time.perf_counter() - t0, "cpu": cpu, "peak_mb": peak}))


def _run(*args: str) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{' '.join(args[:2])}: failed\n{proc.stderr}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """Generate both files and import each in a child process; print the figures against the targets."""
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    lines = int(argv[0]) if argv else 100_000
    backends = [("sqlite", "")]
    pg_name = None
    if "--postgresql" in sys.argv:
        sys.path.insert(0, str(ROOT))
        from tests import pg

        pg.check_server()
        pg_name = pg.create_database()
        backends.append(("postgresql", pg.sqlalchemy_url(pg_name)))
    print(f"{lines} lines per file; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, writer, name in (("csv", write_csv, "inv.csv"), ("ansible", write_ini, "inv.ini")):
                path = Path(tmp) / name
                writer(path, lines)
                base = _run("--floor", fmt, str(path), str(Path(tmp) / f"floor-{fmt}.db"))
                for backend, url in backends:
                    if backend == "postgresql":
                        # A fresh database per format: the second import must find nothing of the first.
                        from tests import pg

                        pg.drop_database(pg_name)
                        pg_name = pg.create_database()
                        url = pg.sqlalchemy_url(pg_name)
                    r = _run("--child", fmt, str(path), str(Path(tmp) / f"home-{fmt}-{backend}"), url)
                    if r is None:
                        continue
                    vs_floor = f"; floor {base['total']:.1f} s, keyturn {r['total'] / base['total']:.1f}x" if base else ""
                    print(f"{fmt:8s} {backend:10s} parse {r['parse']:.1f} s + write {r['write']:.1f} s = "
                          f"{r['total']:.1f} s ({r['total'] / TARGET_SECONDS:.2f} of the {TARGET_SECONDS:.0f} s target; "
                          f"CPU {r['cpu']:.1f} s), peak {r['peak_mb']:.0f} MB ({r['peak_mb'] / TARGET_MB:.2f} of "
                          f"{TARGET_MB:.0f} MB); {r['assets']} assets, {r['accounts']} accounts{vs_floor}")
                    print(f"{'':8s} {'':10s} same file again: {r['again']:.1f} s, "
                          f"{'CHANGED SOMETHING' if r['again_changed'] else 'nothing changed'}")
    finally:
        if pg_name:
            from tests import pg

            pg.drop_database(pg_name)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor":
        floor(*sys.argv[2:5])
    else:
        main()
