"""Database assets behind an SSH gateway (and beside it): heartbeats, crash recovery, TLS names, worker retries.

Real servers only: private PostgreSQL / MariaDB / Redis (tests/dbservers.py) and a sandbox sshd host as the
gateway, whose pinned key keyturn trusts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.context import Context
from core.heartbeat import run_heartbeat
from storage.inventory import pin_host_key, upsert_account, upsert_asset
from storage import executions as rec
from tests.conftest import ROOT
from tests.integration.test_db_rotation import NASTY, db_asset, fresh, task, vault_secret
from tests.integration.test_rotation import wait_past_deadlines

pytestmark = [pytest.mark.sshd]

# Deadlines 6 s after `pushing` (command timeout + 2 margins), so reconcile may judge soon after the kill.
FAST = {"KEYTURN_COMMAND_TIMEOUT": "2", "KEYTURN_DEADLINE_MARGIN": "2"}


def gateway_asset(ctx: Context, h: Any, name: str = "jump") -> None:
    """The sandbox host as a trusted gateway asset (pinned key, privileged admin account)."""
    with ctx.db.write() as s:
        gw, _ = upsert_asset(s, name, address=h.address, port=h.port, platform="linux")
        key_type, b64 = h.host_key.split()[:2]
        pin_host_key(s, gw, key_type, b64, "test")
        upsert_account(ctx.db, s, gw, h.admin_user, secret=h.admin_password, privileged=True)


def test_heartbeat_of_database_accounts_direct_and_through_a_gateway(
        ctx: Context, pg_private: Any, mariadb_private: Any, redis_private: Any, sandbox_host: Any) -> None:
    """ok / rejected / unreachable for database accounts as for hosts, through the gateway's tunnel too."""
    from core.drivers import gateway

    h = sandbox_host
    gateway_asset(ctx, h)
    pg_ok, pg_drift, gw_pg_ok, gw_pg_drift, gw_my, rd = (fresh("hb") for _ in range(6))
    for u in (pg_ok, pg_drift, gw_pg_ok, gw_pg_drift):
        pg_private.create_role(u, "hb-start-1")
    mariadb_private.create_user(gw_my, "hb-start-1")
    redis_private.create_user(rd, "hb-start-1")
    db_asset(ctx, "hb-pg", "postgresql", pg_private, accounts={pg_ok: "hb-start-1", pg_drift: "hb-start-1"})
    db_asset(ctx, "hb-gw-pg", "postgresql", pg_private, accounts={gw_pg_ok: "hb-start-1", gw_pg_drift: "hb-start-1"},
             options={"gateway": "jump"})
    db_asset(ctx, "hb-gw-maria", "mariadb", mariadb_private, accounts={gw_my: "hb-start-1"},
             options={"gateway": "jump"})
    db_asset(ctx, "hb-redis", "redis", redis_private, accounts={rd: "hb-start-1"})
    users = [pg_ok, pg_drift, gw_pg_ok, gw_pg_drift, gw_my, rd]
    task(ctx, "hb", users, ["hb-pg", "hb-gw-pg", "hb-gw-maria", "hb-redis"])
    # Drift made outside keyturn, on the server itself.
    pg_private.create_role(pg_drift, "changed-by-hand")
    pg_private.create_role(gw_pg_drift, "changed-by-hand")
    log_start = len(h.log())

    report = run_heartbeat(ctx, "hb", reconcile=False)
    got = {r.username: (r.status, r.reason) for r in report.results}
    assert {u: s for u, (s, _r) in got.items()} == {
        pg_ok: "ok", pg_drift: "rejected", gw_pg_ok: "ok", gw_pg_drift: "rejected", gw_my: "ok", rd: "ok"}, got
    assert "Accepted password for " + h.admin_user in h.log()[log_start:], "the gateway was not used"
    assert not gateway._tunnels, "a heartbeat left a tunnel open"
    # A heartbeat changes nothing: the accounts still take exactly what they took.
    assert pg_private.can_login(gw_pg_ok, "hb-start-1") and pg_private.can_login(gw_pg_drift, "changed-by-hand")

    # The gateway down: its databases' accounts are unreachable (naming the gateway), the others still answer.
    h.stop()
    try:
        report = run_heartbeat(ctx, "hb", reconcile=False)
    finally:
        h.start()
    got = {r.username: (r.status, r.reason) for r in report.results}
    for u in (gw_pg_ok, gw_pg_drift, gw_my):
        assert got[u][0] == "unreachable" and "gateway jump" in got[u][1], got[u]
    assert got[pg_ok][0] == "ok" and got[rd][0] == "ok" and got[pg_drift][0] == "rejected"
    for r in report.results:
        assert "hb-start-1" not in r.reason and h.admin_password not in r.reason
    assert not gateway._tunnels

    # A database server down behind a working gateway: unreachable too (the secret was not tested).
    pg_private.stop()
    try:
        report = run_heartbeat(ctx, "hb", reconcile=False)
    finally:
        pg_private.start()
    got = {r.username: r.status for r in report.results}
    assert got[gw_pg_ok] == got[gw_pg_drift] == got[pg_ok] == "unreachable", got
    assert got[gw_my] == "ok" and got[rd] == "ok"


@pytest.mark.parametrize("point,expected", [("pushed", "success"), ("pushing", "failed")])
def test_sigkill_over_databases_behind_a_gateway_then_reconcile(
        ctx: Context, pg_private: Any, mariadb_private: Any, sandbox_host: Any, keyturn_env: dict[str, str],
        keyturn_cli: Any, tmp_path: Path, point: str, expected: str) -> None:
    """`keyturn task run` SIGKILLed at an exact step over databases reached through a gateway; `keyturn
    reconcile` probes through a tunnel of its own and settles every record: the servers accept exactly the
    vault's current secrets."""
    h = sandbox_host
    gateway_asset(ctx, h)
    pg_users, my_users = [fresh("gk") for _ in range(2)], [fresh("gk") for _ in range(2)]
    for u in pg_users:
        pg_private.create_role(u, f"{u}-{NASTY}")
    for u in my_users:
        mariadb_private.create_user(u, f"{u}-{NASTY}")
    db_asset(ctx, "gk-pg", "postgresql", pg_private, accounts={u: f"{u}-{NASTY}" for u in pg_users},
             options={"gateway": "jump"})
    db_asset(ctx, "gk-maria", "mariadb", mariadb_private, accounts={u: f"{u}-{NASTY}" for u in my_users},
             options={"gateway": "jump"})
    task(ctx, "gk", pg_users + my_users, ["gk-pg", "gk-maria"])
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "task", "run", "gk", "--no-reconcile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**keyturn_env, **FAST, "KEYTURN_TEST_PAUSE_AFTER": f"{point}:{flag}"})
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the pause point"
            time.sleep(0.05)
        time.sleep(1.0)  # the other asset goes on meanwhile
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    caught = int(flag.read_text().split()[1])
    log_start = len(h.log())
    first = keyturn_cli("reconcile", env=FAST)
    wait_past_deadlines(ctx)
    second = keyturn_cli("reconcile", env=FAST)
    assert second.returncode == 0, first.stdout + second.stdout + second.stderr
    assert "Accepted password for " + h.admin_user in h.log()[log_start:], "reconcile did not use the gateway"
    records = rec.list_records(ctx.db)
    assert records and all(r.status in ("success", "failed") for r in records), \
        [(r.asset_name, r.username, r.status, r.error) for r in records]
    settled = rec.get_record(ctx.db, caught)
    assert settled.status == expected, (settled.asset_name, settled.status, settled.error)
    for u in pg_users:
        assert pg_private.can_login(u, vault_secret(ctx, "gk-pg", u)), u
    for u in my_users:
        assert mariadb_private.can_login(u, vault_secret(ctx, "gk-maria", u)), u


@pytest.mark.both_backends
def test_retry_on_workers(ctx: Context, pg_private: Any, sandbox_host: Any, keyturn_env: dict[str, str],
                          keyturn_cli: Any, tmp_path: Path) -> None:
    """`keyturn retry --task T --failed --workers` queues the retry for workers like `task run --workers`:
    one `keyturn worker --once` re-pushes the unverified record's same candidate, gives the failed one a fresh
    secret (through the gateway), and the retry's follower exits 0 with the servers on the vault's secrets."""
    from storage.tables import WorkUnit
    from sqlmodel import select

    gateway_asset(ctx, sandbox_host)
    trusted, missing = fresh("rw"), fresh("rw")
    pg_private.create_role(trusted, "rw-start-1")
    db_asset(ctx, "rw-pg", "postgresql", pg_private, accounts={trusted: "rw-start-1"})
    db_asset(ctx, "rw-gw-pg", "postgresql", pg_private, accounts={missing: "rw-start-1"}, options={"gateway": "jump"})
    task(ctx, "rw", [trusted, missing], ["rw-pg", "rw-gw-pg"])
    pg_private.trust(trusted)
    try:
        first = keyturn_cli("task", "run", "rw")
    finally:
        pg_private.trust(None)
    assert first.returncode == 1, first.stdout + first.stderr
    by_user = {r.username: r for r in rec.list_records(ctx.db)}
    assert by_user[trusted].status == "unverified" and by_user[missing].status == "failed", by_user
    candidate = rec.record_secrets(ctx.db, by_user[trusted].id)[1]
    pg_private.create_role(missing, "rw-start-1")  # the operator fixed what failed

    retry = subprocess.Popen([sys.executable, "-m", "tui", "retry", "--task", "rw", "--failed", "--workers"],
                             cwd=ROOT, env=keyturn_env, text=True, stdout=(tmp_path / "retry.log").open("w"),
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # queued (units committed) before the one worker starts: --once then finds the work
            with ctx.db.read() as s:
                if s.exec(select(WorkUnit)).first() is not None:
                    break
            assert retry.poll() is None, (tmp_path / "retry.log").read_text()
            assert time.monotonic() < deadline, "the retry was never queued"
            time.sleep(0.05)
        worker = keyturn_cli("worker", "--once", "--poll", "0.2", timeout=180)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        assert retry.wait(timeout=60) == 0, (tmp_path / "retry.log").read_text()
    finally:
        if retry.poll() is None:
            retry.kill()
            retry.wait()
    out = (tmp_path / "retry.log").read_text()
    assert "finished: success; 2 succeeded" in out, out
    retried = [r for r in rec.list_records(ctx.db) if r.retry_of is not None]
    assert {r.retry_of for r in retried} == {by_user[trusted].id, by_user[missing].id}
    assert all(r.status == "success" and r.attempt == 2 for r in retried), retried
    assert vault_secret(ctx, "rw-pg", trusted) == candidate  # the unverified record's same candidate
    assert pg_private.can_login(trusted, candidate) and not pg_private.can_login(trusted, "rw-start-1")
    assert pg_private.can_login(missing, vault_secret(ctx, "rw-gw-pg", missing))
    assert not pg_private.can_login(missing, "rw-start-1")


def test_verify_full_through_a_gateway_checks_the_assets_own_name(
        ctx: Context, pg_tls_localhost: Any, sandbox_host: Any) -> None:
    """Through the tunnel libpq connects to 127.0.0.1, yet `--tls verify-full` checks the certificate against
    the asset's address: a certificate for `localhost` passes for an asset at `localhost`, and an asset at
    `127.0.0.1` (a name the certificate does not hold) is refused before anything is sent."""
    from core.engine import run_task

    server = pg_tls_localhost
    gateway_asset(ctx, sandbox_host)
    good, bad = fresh("vf"), fresh("vf")
    for u in (good, bad):
        server.create_role(u, "vf-start-1")
    opts = {"tls": "verify-full", "ca_file": server.ca_file, "gateway": "jump"}
    for name, address, user in (("vf-name", "localhost", good), ("vf-ip", "127.0.0.1", bad)):
        with ctx.db.write() as s:
            asset, _ = upsert_asset(s, name, address=address, port=server.port, platform="postgresql", options=opts)
            upsert_account(ctx.db, s, asset, server.admin_user, secret=server.admin_password, privileged=True)
            upsert_account(ctx.db, s, asset, user, secret="vf-start-1")
    info = run_task(ctx, task(ctx, "vf-name", [good], ["vf-name"]).name)
    [ok] = rec.list_records(ctx.db, execution_id=info.id)
    assert ok.status == "success", ok.error
    assert server.can_login(good, vault_secret(ctx, "vf-name", good)) and not server.can_login(good, "vf-start-1")
    info = run_task(ctx, task(ctx, "vf-ip", [bad], ["vf-ip"]).name)
    [refused] = rec.list_records(ctx.db, execution_id=info.id)
    assert refused.status == "failed" and "127.0.0.1" in refused.error, refused.error
    assert server.can_login(bad, "vf-start-1")


def test_verify_full_through_a_gateway_checks_the_mariadb_assets_own_name(
        ctx: Context, mariadb_tls_localhost: Any, sandbox_host: Any) -> None:
    """The same for MariaDB (PyMySQL): the certificate for `localhost` passes for an asset at `localhost`
    through the tunnel; an asset at `127.0.0.1` is refused before anything is sent."""
    from core.engine import run_task

    server = mariadb_tls_localhost
    gateway_asset(ctx, sandbox_host)
    good, bad = fresh("vm"), fresh("vm")
    for u in (good, bad):
        server.create_user(u, "vm-start-1")
    opts = {"tls": "verify-full", "ca_file": server.ca_file, "gateway": "jump"}
    for name, address, user in (("vm-name", "localhost", good), ("vm-ip", "127.0.0.1", bad)):
        with ctx.db.write() as s:
            asset, _ = upsert_asset(s, name, address=address, port=server.port, platform="mariadb", options=opts)
            upsert_account(ctx.db, s, asset, server.admin_user, secret=server.admin_password, privileged=True)
            upsert_account(ctx.db, s, asset, user, secret="vm-start-1")
    info = run_task(ctx, task(ctx, "vm-name", [good], ["vm-name"]).name)
    [ok] = rec.list_records(ctx.db, execution_id=info.id)
    assert ok.status == "success", ok.error
    assert server.can_login(good, vault_secret(ctx, "vm-name", good)) and not server.can_login(good, "vm-start-1")
    info = run_task(ctx, task(ctx, "vm-ip", [bad], ["vm-ip"]).name)
    [refused] = rec.list_records(ctx.db, execution_id=info.id)
    assert refused.status == "failed" and "127.0.0.1" in refused.error, refused.error
    assert server.can_login(bad, "vm-start-1")


def test_verify_full_through_a_gateway_checks_the_redis_assets_own_name(
        ctx: Context, redis_tls_localhost: Any, sandbox_host: Any) -> None:
    """The same for Redis (redis-py): the certificate for `localhost` passes for an asset at `localhost`
    through the tunnel; an asset at `127.0.0.1` is refused before anything is sent."""
    from core.engine import run_task

    server = redis_tls_localhost
    gateway_asset(ctx, sandbox_host)
    good, bad = fresh("vr"), fresh("vr")
    for u in (good, bad):
        server.create_user(u, "vr-start-1")
    opts = {"tls": "verify-full", "ca_file": server.ca_file, "gateway": "jump"}
    for name, address, user in (("vr-name", "localhost", good), ("vr-ip", "127.0.0.1", bad)):
        with ctx.db.write() as s:
            asset, _ = upsert_asset(s, name, address=address, port=server.port, platform="redis", options=opts)
            upsert_account(ctx.db, s, asset, server.admin_user, secret=server.admin_password, privileged=True)
            upsert_account(ctx.db, s, asset, user, secret="vr-start-1")
    info = run_task(ctx, task(ctx, "vr-name", [good], ["vr-name"]).name)
    [ok] = rec.list_records(ctx.db, execution_id=info.id)
    assert ok.status == "success", ok.error
    assert server.can_login(good, vault_secret(ctx, "vr-name", good)) and not server.can_login(good, "vr-start-1")
    info = run_task(ctx, task(ctx, "vr-ip", [bad], ["vr-ip"]).name)
    [refused] = rec.list_records(ctx.db, execution_id=info.id)
    assert refused.status == "failed" and "127.0.0.1" in refused.error, refused.error
    assert server.can_login(bad, "vr-start-1")
