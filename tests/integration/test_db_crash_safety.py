"""Crash safety over a mixed task: one sandbox SSH host and PostgreSQL, MariaDB and Redis assets.

SIGKILL `keyturn task run` at an exact step (just after `pushing` is committed, just after a push) and after a
few progress lines; then `keyturn reconcile` (twice, the second after every open record's deadline): every
account on every server accepts exactly the vault's current secret, and no record is left open.
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
from storage import executions as rec
from tests.conftest import ROOT, module_fleet
from tests.integration.test_db_rotation import NASTY, db_asset, vault_secret
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, reset_host, wait_past_deadlines
from tests.sandbox import SandboxFleet

# SIGKILL mid-run loses no secret with keyturn's database on SQLite and on PostgreSQL alike.
pytestmark = [pytest.mark.sshd, pytest.mark.both_backends]

USERS = ("alice", "bob")
# Deadlines 6 s after `pushing` (command timeout + 2 margins), so reconcile may judge soon after the kill.
FAST = {"KEYTURN_COMMAND_TIMEOUT": "2", "KEYTURN_DEADLINE_MARGIN": "2"}


fleet = module_fleet(1, USERS, doc="One sandbox host for the module.")


@pytest.fixture
def mixed(ctx: Context, fleet: SandboxFleet, pg_private: Any, mariadb_private: Any, redis_private: Any) -> dict[str, Any]:
    """The inventory and task `crash`: alice and bob on the host and on each database server, fresh passwords."""
    from core.tasks import create_task
    from storage.types import TaskSpec

    host = fleet.hosts[0]
    reset_host(host, USERS)
    build_inventory(ctx, [host], USERS)
    servers = {"c-pg": ("postgresql", pg_private), "c-maria": ("mariadb", mariadb_private),
               "c-redis": ("redis", redis_private)}
    for name, (platform, server) in servers.items():
        pws = {u: f"{u}-{NASTY}-{os.urandom(4).hex()}" for u in USERS}
        for u, pw in pws.items():
            if platform == "postgresql":
                server.create_role(u, pw)
            else:
                server.create_user(u, pw)
        db_asset(ctx, name, platform, server, accounts=pws)
    create_task(ctx, TaskSpec(name="crash", usernames=list(USERS), assets=[host.name, *servers]))
    for name in servers:  # one task per database: an exact-step pause then surely lands on that kind
        create_task(ctx, TaskSpec(name=f"crash-{name}", usernames=list(USERS), assets=[name]))
    return {"host": host, "servers": servers}


def _assert_vault_matches_everything(ctx: Context, mixed: dict[str, Any]) -> None:
    assert_vault_matches_hosts(ctx, [mixed["host"]], USERS)
    for name, (_platform, server) in mixed["servers"].items():
        for u in USERS:
            assert server.can_login(u, vault_secret(ctx, name, u)), f"{name}/{u}: server and vault disagree"


def _start_run(env: dict[str, str], extra: dict[str, str] | None = None, task: str = "crash") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui", "task", "run", task, "--no-reconcile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**env, **FAST, **(extra or {})})


def _kill_and_reconcile(ctx: Context, proc: subprocess.Popen[str], mixed: dict[str, Any], keyturn_cli: Any) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    first = keyturn_cli("reconcile", env=FAST)
    wait_past_deadlines(ctx)
    second = keyturn_cli("reconcile", env=FAST)
    assert second.returncode == 0, first.stdout + second.stdout + second.stderr
    records = rec.list_records(ctx.db)
    assert records and all(r.status in ("success", "failed") for r in records), \
        [(r.asset_name, r.username, r.status, r.error) for r in records]
    _assert_vault_matches_everything(ctx, mixed)


@pytest.mark.parametrize("task", ["crash", "crash-c-pg", "crash-c-maria", "crash-c-redis"])
@pytest.mark.parametrize("point,expected", [("pushing", "failed"), ("pushed", "success")])
def test_sigkill_at_an_exact_step_over_hosts_and_databases(ctx: Context, mixed: dict[str, Any], keyturn_env: dict[str, str],
                                                          keyturn_cli: Any, tmp_path: Path, point: str, expected: str,
                                                          task: str) -> None:
    flag = tmp_path / "paused"
    proc = _start_run(keyturn_env, {"KEYTURN_TEST_PAUSE_AFTER": f"{point}:{flag}"}, task)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.05)
    time.sleep(1.0)  # the other assets' workers go on meanwhile: kill with changes in flight on several kinds
    caught = int(flag.read_text().split()[1])
    _kill_and_reconcile(ctx, proc, mixed, keyturn_cli)
    settled = rec.get_record(ctx.db, caught)
    assert settled.status == expected, (settled.asset_name, settled.status, settled.error)
    again = keyturn_cli("task", "run", "crash")
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_vault_matches_everything(ctx, mixed)


@pytest.mark.parametrize("lines", [4, 10])
def test_sigkill_after_n_progress_lines_over_hosts_and_databases(ctx: Context, mixed: dict[str, Any],
                                                                keyturn_env: dict[str, str], keyturn_cli: Any,
                                                                lines: int) -> None:
    proc = _start_run(keyturn_env)
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(lines)]
    assert all(seen), f"the run ended before {lines} lines: {seen}"
    _kill_and_reconcile(ctx, proc, mixed, keyturn_cli)
