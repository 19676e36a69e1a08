"""Database assets behind an SSH gateway (and beside it): heartbeats, crash recovery, TLS names, worker retries.

Real servers only: private PostgreSQL / MariaDB / Redis (tests/dbservers.py) and a sandbox sshd host as the
gateway, whose pinned key keyturn trusts.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.context import Context
from core.heartbeat import run_heartbeat
from storage.inventory import pin_host_key, upsert_account, upsert_asset
from tests.integration.test_db_rotation import db_asset, fresh, task, vault_secret


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
