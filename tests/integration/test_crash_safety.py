"""Crash safety: SIGKILL `keyturn task run` at many points, reconcile, and no secret may be lost.

The pass mark: after `keyturn reconcile`, every account on every host really accepts the password the vault
holds as current, no record is left pending or pushing, and the killed run is marked interrupted.
Exact points (just after `pushing` is committed, just after the push) use the engine's documented test hook
KEYTURN_TEST_PAUSE_AFTER; the others kill after N progress lines, wherever the run happens to be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.context import Context
from storage import executions as rec
from tests.conftest import ROOT, fresh_hosts, module_fleet
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, make_task, wait_past_deadlines
from tests.sandbox import SandboxHost

# SIGKILL mid-run loses no secret with the database on SQLite and on PostgreSQL alike.
pytestmark = [pytest.mark.sshd, pytest.mark.both_backends]

USERS = ("alice", "bob", "carol")


fleet = module_fleet(3, USERS, doc="Three hosts with three users each, shared by the module.")


hosts = fresh_hosts(USERS, doc="The fleet, reset to a known state.")


# A short command timeout and deadline margin keep the records' deadlines (command timeout + 2 margins: 6 s
# instead of the default 70 s) close; what is proved does not depend on how long the host may take.
FAST = {"KEYTURN_COMMAND_TIMEOUT": "2", "KEYTURN_DEADLINE_MARGIN": "2"}


def _start_run(env: dict[str, str], extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui", "task", "run", "crash", "--no-reconcile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**env, **FAST, **(extra or {})})


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _check_after_reconcile(ctx: Context, hosts: list[SandboxHost], keyturn_cli) -> str:  # noqa: ANN001
    # The first reconcile settles what it can and leaves a record caught mid-push unverified until its deadline.
    first = keyturn_cli("reconcile", env=FAST)
    wait_past_deadlines(ctx)
    proc = keyturn_cli("reconcile", env=FAST)
    assert proc.returncode == 0, first.stdout + proc.stdout + proc.stderr
    assert_vault_matches_hosts(ctx, hosts, USERS)
    records = rec.list_records(ctx.db)
    assert records and all(r.status in ("success", "failed") for r in records), [(r.id, r.status, r.error) for r in records]
    [execution] = {r.execution_id for r in records}
    assert rec.get_execution(ctx.db, execution).status == "interrupted"
    return proc.stdout


@pytest.mark.parametrize("lines", [3, 9, 15, 21])
def test_sigkill_after_n_progress_lines_loses_no_secret(ctx: Context, hosts: list[SandboxHost], keyturn_env: dict[str, str],
                                                       keyturn_cli, lines: int) -> None:  # noqa: ANN001
    build_inventory(ctx, hosts, USERS)
    make_task(ctx, "crash", hosts, USERS)
    proc = _start_run(keyturn_env)
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(lines)]
    assert all(seen), f"the run ended before {lines} lines: {seen}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    _kill(proc)
    _check_after_reconcile(ctx, hosts, keyturn_cli)


@pytest.mark.parametrize("point,expected", [("pushing", "failed"), ("pushed", "success")])
def test_sigkill_at_an_exact_step_is_settled_by_probing(ctx: Context, hosts: list[SandboxHost], keyturn_env: dict[str, str],
                                                       keyturn_cli, tmp_path: Path, point: str, expected: str) -> None:  # noqa: ANN001
    build_inventory(ctx, hosts, USERS)
    make_task(ctx, "crash", hosts, USERS)
    flag = tmp_path / "paused"
    proc = _start_run(keyturn_env, {"KEYTURN_TEST_PAUSE_AFTER": f"{point}:{flag}"})
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.05)
    time.sleep(0.05)  # the flag is written before its content: read it once it is surely complete
    caught = rec.get_record(ctx.db, int(flag.read_text().split()[1]))
    assert caught.status == "pushing", "the record is committed as pushing before the host is touched"
    _kill(proc)
    out = _check_after_reconcile(ctx, hosts, keyturn_cli)
    settled = rec.get_record(ctx.db, caught.id)
    assert settled.status == expected
    if expected == "failed":
        assert settled.error == "host kept the old secret"
    assert "reconcile: probed" in out

    # The dead run's lock is gone: the task runs again straight away, and everything ends consistent.
    again = keyturn_cli("task", "run", "crash")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_vault_matches_hosts(ctx, hosts, USERS)
