"""Several "machines" (separate data directories, the same master key) sharing one PostgreSQL database.

Real sandbox sshd hosts, real `keyturn` processes; each machine's data directory holds only its key file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.context import Context
from core.tasks import create_task
from storage.keyfile import key_path
from storage.types import TaskSpec
from tests.conftest import ROOT
from tests.integration.test_scheduler_runs import due_now, enroll, executions, vault_password
from tests.sandbox import SandboxHost

pytestmark = [pytest.mark.sshd, pytest.mark.parametrize("backend", ["postgresql"], indirect=True)]


def machine(keyturn_env: dict[str, str], tmp_path: Path, ctx: Context, name: str, **extra: str) -> dict[str, str]:
    """Environment of another machine: its own data directory holding a copy of the master key (0600)."""
    home = tmp_path / name
    home.mkdir(mode=0o700)
    shutil.copy2(key_path(ctx.home), key_path(home))
    key_path(home).chmod(0o600)
    return {**keyturn_env, "KEYTURN_HOME": str(home), **extra}


def keyturn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start `keyturn ARGS` as that machine."""
    return subprocess.Popen([sys.executable, "-m", "tui", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_three_schedulers_on_three_machines_run_a_due_task_once(ctx: Context, sandbox_fleet, keyturn_env,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    host: SandboxHost = sandbox_fleet(1, users=["alice"]).hosts[0]
    enroll(ctx, host, ["alice"])
    create_task(ctx, TaskSpec(name="hourly", usernames=["alice"], assets=[host.name], interval_hours=1))
    due_now(ctx, "hourly")
    envs = [machine(keyturn_env, tmp_path, ctx, f"m{i}") for i in range(3)]

    procs = [keyturn(env, "scheduler", "--once") for env in envs]
    results = [p.communicate(timeout=180) for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert [(r.trigger, r.status) for r in executions(ctx, "hourly")] == [("schedule", "success")]
    logs = "".join(err for _, err in results)
    assert logs.count("task hourly: scheduled run starting") == 1 and logs.count("nothing due") == 2
    assert host.password_works("alice", vault_password(ctx, host.name, "alice"))


def test_a_run_on_one_machine_is_seen_live_from_another(ctx: Context, sandbox_fleet, keyturn_env,  # noqa: ANN001
                                                       tmp_path: Path, keyturn_cli) -> None:
    users = ["u1", "u2", "u3"]
    hosts = sandbox_fleet(4, users=users).hosts
    for host in hosts:
        enroll(ctx, host, users)
    create_task(ctx, TaskSpec(name="web", usernames=users, assets=[h.name for h in hosts]))
    runner = machine(keyturn_env, tmp_path, ctx, "jump-a", KEYTURN_CONCURRENCY="1")  # one asset at a time
    watcher = machine(keyturn_env, tmp_path, ctx, "jump-b")

    run = keyturn(runner, "task", "run", "web")
    seen_mid_run: list[list[str]] = []
    while run.poll() is None:
        # Forked (no interpreter start): a busy machine must not make the watcher slower than the run.
        proc = keyturn_cli("records", "list", "--task", "web", "--json", env=watcher, timeout=60)
        assert proc.returncode == 0, proc.stderr
        statuses = [r["status"] for r in json.loads(proc.stdout)]
        if run.poll() is None and 0 < statuses.count("success") < 12:
            seen_mid_run.append(statuses)
        time.sleep(0.05)
    out, err = run.communicate()
    assert run.returncode == 0, out + err

    assert seen_mid_run, "the second machine never saw the run between its first and last account"
    final = executions(ctx, "web")[-1]
    assert (final.status, final.succeeded, final.total) == ("success", 12, 12)
    for host in hosts:
        for user in users:
            assert host.password_works(user, vault_password(ctx, host.name, user))


def test_a_machine_without_the_master_key_or_with_another_is_refused(ctx: Context, keyturn_env, tmp_path: Path,  # noqa: ANN001
                                                                     keyturn_cli) -> None:
    from storage.inventory import upsert_account, upsert_asset

    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="127.0.0.1")
        upsert_account(ctx.db, s, asset, "alice", secret="some-password")
    no_key = {"KEYTURN_HOME": str(tmp_path / "fresh")}
    proc = keyturn_cli("asset", "list", env=no_key)
    assert proc.returncode == 2 and "master key" in proc.stderr and "missing" in proc.stderr
    other = machine(keyturn_env, tmp_path, ctx, "other")
    key_path(Path(other["KEYTURN_HOME"])).write_bytes(bytes(32))
    proc = keyturn_cli("asset", "list", env={"KEYTURN_HOME": other["KEYTURN_HOME"]})
    assert proc.returncode == 2 and "does not match this database" in proc.stderr, proc.stderr
