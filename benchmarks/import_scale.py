"""Import scale: a 100,000-line inventory (CSV, then Ansible INI) into a fresh database, in one transaction.

Prints, for each format, the seconds spent parsing, writing and in total, the peak memory of the process
(ru_maxrss, so each format runs in its own child process), and the ratio to the targets (15 s, 200 MB).
Run: .venv/bin/python benchmarks/import_scale.py [LINES]
"""

from __future__ import annotations

import json
import os
import resource
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


def child(fmt: str, path: str, home: str) -> None:
    """Parse and apply one file; print the figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from core.config import load_settings
    from core.context import open_context
    from core.importer import apply_inventory, parse_inventory

    env = {"KEYTURN_HOME": home, "KEYTURN_CONFIG": os.path.join(home, "none.toml")}
    ctx = open_context(load_settings(env=env), operator="bench")
    t0 = time.perf_counter()
    inv = parse_inventory(Path(path), fmt)
    t1 = time.perf_counter()
    summary = apply_inventory(ctx.db, inv)
    t2 = time.perf_counter()
    ctx.close()
    print(json.dumps({"parse": t1 - t0, "write": t2 - t1, "total": t2 - t0,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "assets": summary.assets_created, "accounts": summary.accounts_created}))


def main() -> None:
    """Generate both files and import each in a child process."""
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, writer, name in (("csv", write_csv, "inv.csv"), ("ansible", write_ini, "inv.ini")):
            path = Path(tmp) / name
            writer(path, lines)
            home = Path(tmp) / f"home-{fmt}"
            proc = subprocess.run([sys.executable, __file__, "--child", fmt, str(path), str(home)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{fmt}: failed\n{proc.stderr}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{fmt:8s} {lines} lines: parse {r['parse']:.1f}s, write {r['write']:.1f}s, total {r['total']:.1f}s "
                  f"({r['total'] / TARGET_SECONDS:.2f} of the {TARGET_SECONDS:.0f}s target), peak {r['peak_mb']:.0f} MB "
                  f"({r['peak_mb'] / TARGET_MB:.2f} of {TARGET_MB:.0f} MB); {r['assets']} assets, {r['accounts']} accounts")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
