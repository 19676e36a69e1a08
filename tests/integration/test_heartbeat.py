"""Heartbeats against real sshd sandbox hosts: drift is found by logging in, and nothing on the host changes."""

from __future__ import annotations


import pytest

from core.context import Context
from core.heartbeat import latest, run_heartbeat
from storage.drift import latest_heartbeats
from tests.conftest import fresh_hosts, module_fleet
from tests.integration.test_rotation import build_inventory, make_task
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob", "carol")


fleet = module_fleet(2, USERS, doc="Two sandbox hosts with alice, bob and carol.")


def _unlock(hosts: list[SandboxHost]) -> None:
    for h in hosts:
        for u in USERS:
            h.run(["usermod", "-U", u])


hosts = fresh_hosts(USERS, prepare=_unlock, doc="The fleet's hosts, running, with fresh passwords and no locked accounts.")


def test_heartbeat_finds_ok_rejected_locked_and_unreachable_without_changing_anything(
        ctx: Context, hosts: list[SandboxHost]) -> None:
    h1, h2 = hosts
    build_inventory(ctx, hosts, USERS)
    make_task(ctx, "beat", hosts, USERS)
    # Drift made outside keyturn: bob's password changed by hand, carol's account locked, h2 down.
    h1.set_password("bob", new_password())
    h1.run(["passwd", "-l", "carol"], check=True)
    before = {u: h1.shadow_hash(u) for u in USERS}
    h2.stop()
    try:
        report = run_heartbeat(ctx, "beat")
    finally:
        h2.start()
    got = {(r.asset_name, r.username): r.status for r in report.results}
    assert got == {
        (h1.name, "alice"): "ok", (h1.name, "bob"): "rejected", (h1.name, "carol"): "locked",
        (h2.name, "alice"): "unreachable", (h2.name, "bob"): "unreachable", (h2.name, "carol"): "unreachable",
    }
    assert not report.all_ok
    assert report.counts() == {"ok": 1, "rejected": 1, "locked": 1, "unreachable": 3}
    # A heartbeat changes nothing on the host.
    assert {u: h1.shadow_hash(u) for u in USERS} == before
    # Stored: the latest per account, filterable by status, with the time of the check.
    stored = latest(ctx, "rejected")
    assert [(h.asset_name, h.username) for h in stored] == [(h1.name, "bob")]
    assert stored[0].checked_at is not None
    assert "unreachable" not in {h.status for h in latest(ctx, "ok")}


def test_a_second_heartbeat_replaces_the_latest_result(ctx: Context, hosts: list[SandboxHost]) -> None:
    h1 = hosts[0]
    build_inventory(ctx, [h1], ["alice"])
    make_task(ctx, "beat1", [h1], ["alice"])
    original = h1.passwords["alice"]
    h1.set_password("alice", new_password())
    assert [r.status for r in run_heartbeat(ctx, "beat1").results] == ["rejected"]
    # The operator puts the real password back on the host: the next heartbeat says ok again.
    h1.set_password("alice", original)
    assert run_heartbeat(ctx, "beat1").all_ok
    assert [h.status for h in latest_heartbeats(ctx.db)] == ["ok"]


def test_reconcile_drift_gives_rejected_accounts_a_new_secret_through_the_privileged_account(
        ctx: Context, hosts: list[SandboxHost]) -> None:
    from core.task_options import set_options
    from storage import executions as rec
    from tests.integration.test_rotation import assert_vault_matches_hosts, vault

    h1 = hosts[0]
    build_inventory(ctx, [h1], USERS)
    make_task(ctx, "fix", [h1], USERS)
    set_options(ctx, "fix", reconcile_drift=True)
    h1.set_password("bob", new_password())  # drift made by hand
    h1.run(["passwd", "-l", "carol"], check=True)
    before = {u: vault(ctx, h1.name, u).secret for u in USERS}
    report = run_heartbeat(ctx, "fix")
    assert report.reconciled is not None and report.reconciled.trigger == "reconcile"
    [record] = rec.list_records(ctx.db, execution_id=report.reconciled.id)
    # Only the rejected account was changed, with the usual write-ahead record; the locked one was left alone.
    assert (record.username, record.status) == ("bob", "success")
    assert vault(ctx, h1.name, "bob").secret != before["bob"]
    assert {u: vault(ctx, h1.name, u).secret for u in ("alice", "carol")} == {u: before[u] for u in ("alice", "carol")}
    assert_vault_matches_hosts(ctx, [h1], ["alice", "bob"])
    assert {r.username: r.status for r in run_heartbeat(ctx, "fix", reconcile=False).results} == {
        "alice": "ok", "bob": "ok", "carol": "locked"}
