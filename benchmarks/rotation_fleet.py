"""Benchmark: keyturn's engine against a bare paramiko floor doing the same SSH work on real sshd hosts.

Fleet: 20 sandbox hosts x 10 accounts, random passwords, check-after-change on. The floor is the least any
tool must do: per host one privileged connection, `sudo -n chpasswd` once per account with the line on stdin,
one login per account with its new password, with the same concurrency. Rounds alternate which goes first.

    sudo .venv/bin/python benchmarks/rotation_fleet.py [--hosts 20] [--accounts 10] [--rounds 3]

Prints keyturn_s, floor_s and keyturn_s / floor_s (target: <= 1.3). Needs root (see tests/sandbox.py).
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paramiko  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.context import Context, open_context  # noqa: E402
from core.engine import run_task  # noqa: E402
from core.tasks import create_task  # noqa: E402
from storage.inventory import get_asset_row, pin_host_key, upsert_account, upsert_asset  # noqa: E402
from storage.types import TaskSpec  # noqa: E402
from tests.sandbox import SandboxFleet, SandboxHost  # noqa: E402


def build(ctx: Context, fleet: SandboxFleet, users: list[str]) -> None:
    """Inventory of the fleet and one task over every account."""
    with ctx.db.write() as s:
        for h in fleet:
            asset, _ = upsert_asset(s, h.name, address=h.address, port=h.port, platform="linux")
            kt, b64 = h.host_key.split()[:2]
            pin_host_key(s, asset, kt, b64, "bench")
            upsert_account(ctx.db, s, asset, h.admin_user, secret=h.admin_password, privileged=True)
            for u in users:
                upsert_account(ctx.db, s, asset, u, secret=h.passwords[u])
    create_task(ctx, TaskSpec(name="bench", usernames=users, assets=[h.name for h in fleet], check_after_change=True))


def _client(h: SandboxHost) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    kt, b64 = h.host_key.split()[:2]
    client.get_host_keys().add(f"[{h.address}]:{h.port}", kt, paramiko.PKey.from_type_string(kt, base64.b64decode(b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def floor_host(h: SandboxHost, users: list[str]) -> dict[str, str]:
    """The bare minimum on one host; returns the new passwords."""
    new = {u: secrets.token_urlsafe(18) for u in users}
    admin = _client(h)
    admin.connect(h.address, h.port, username=h.admin_user, password=h.admin_password, look_for_keys=False,
                  allow_agent=False, timeout=10)
    try:
        for u in users:
            stdin, stdout, _stderr = admin.exec_command("sudo -n chpasswd", timeout=60)
            stdin.write(f"{u}:{new[u]}\n")
            stdin.channel.shutdown_write()
            if stdout.channel.recv_exit_status() != 0:
                raise RuntimeError(f"{h.name}: chpasswd failed for {u}")
            check = _client(h)
            check.connect(h.address, h.port, username=u, password=new[u], look_for_keys=False, allow_agent=False,
                          timeout=10)
            check.close()
    finally:
        admin.close()
    return new


def run_floor(fleet: SandboxFleet, users: list[str], concurrency: int) -> tuple[float, dict[str, dict[str, str]]]:
    """Time the floor over the fleet."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(concurrency, len(fleet))) as pool:
        results = dict(zip([h.name for h in fleet], pool.map(lambda h: floor_host(h, users), fleet)))
    return time.perf_counter() - t0, results


def run_keyturn(ctx: Context) -> float:
    """Time one keyturn run of the task; it must fully succeed."""
    t0 = time.perf_counter()
    info = run_task(ctx, "bench", trigger="manual")
    elapsed = time.perf_counter() - t0
    if info.succeeded != info.total:
        from storage.executions import list_records

        bad = [f"{r.asset_name}/{r.username}: {r.status}: {r.error}" for r in list_records(ctx.db, execution_id=info.id)
               if r.status != "success"]
        raise SystemExit(f"keyturn run {info.id} was not a full success: {info.status}\n" + "\n".join(bad))
    return elapsed


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    users = [f"u{i:02d}" for i in range(args.accounts)]
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp:
        settings = load_settings(env={"KEYTURN_HOME": f"{tmp}/home", "KEYTURN_CONFIG": f"{tmp}/none.toml"})
        ctx = open_context(settings, operator="bench", source="benchmark")
        print(f"starting {args.hosts} sandbox hosts x {args.accounts} accounts ...", flush=True)
        with SandboxFleet(args.hosts, users=users) as fleet:
            build(ctx, fleet, users)
            keyturn_times: list[float] = []
            floor_times: list[float] = []
            for rnd in range(args.rounds):
                order = ("keyturn", "floor") if rnd % 2 == 0 else ("floor", "keyturn")
                for which in order:
                    if which == "keyturn":
                        keyturn_times.append(run_keyturn(ctx))
                    else:
                        elapsed, new = run_floor(fleet, users, settings.concurrency)
                        floor_times.append(elapsed)
                        # Keep the vault true to the hosts (outside the timing) so every keyturn run starts honest.
                        with ctx.db.write() as s:
                            for h in fleet:
                                asset = get_asset_row(s, h.name)
                                for u in users:
                                    upsert_account(ctx.db, s, asset, u, secret=new[h.name][u])
                print(f"round {rnd + 1}: keyturn {keyturn_times[-1]:.2f}s, floor {floor_times[-1]:.2f}s", flush=True)
        ctx.close()
    k, f = statistics.median(keyturn_times), statistics.median(floor_times)
    print(f"accounts={args.hosts * args.accounts} concurrency={settings.concurrency} rounds={args.rounds}")
    print(f"keyturn_s={k:.2f}")
    print(f"floor_s={f:.2f}")
    print(f"keyturn_s / floor_s = {k / f:.2f} (target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
