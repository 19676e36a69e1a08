"""Crash safety of interactive changes: SIGKILL `keyturn task run` in the middle of a typed sequence (custom-ssh)
and of a self-change, then `keyturn reconcile`: every account's real password is the one the vault calls
current, and no record is left open.

The kill lands right after a chosen step was typed, through the documented test hook of
core/drivers/interactive.py (KEYTURN_TEST_PAUSE_AFTER="step-N:FLAGFILE").
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
from storage.types import HostParams
from tests.conftest import ROOT, fresh_host, module_fleet
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, make_task
from tests.sandbox import SandboxHost

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")


# A push's deadline is command timeout + two margins after `pushing`; the test waits it out before reconcile.
# 8 s and 2 s margins (12 s; the fixtures' 15 s and 5 s margins make 25 s) still leave the typing 10 s before keyturn
# stops short of the deadline, and the kill lands at step 2 to 4, a second or two in.
SHORT = {"KEYTURN_COMMAND_TIMEOUT": "8", "KEYTURN_DEADLINE_MARGIN": "2"}


fleet = module_fleet(1, USERS, doc="One host with alice and bob, shared by the module.")


host = fresh_host(USERS)


def _run_until_paused(env: dict[str, str], flag: Path, step: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tui", "task", "run", "crash", "--no-reconcile"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**env, **SHORT, "KEYTURN_TEST_PAUSE_AFTER": f"step-{step}:{flag}"})
    deadline = time.monotonic() + 120
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run never reached step {step}: {out}\n{err}")
        time.sleep(0.05)
    return proc


def _kill_and_reconcile(proc: subprocess.Popen[str], ctx: Context, host: SandboxHost, keyturn_cli) -> list:  # noqa: ANN001
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    from tests.integration.test_rotation import wait_past_deadlines

    wait_past_deadlines(ctx)  # as for hosts: reconcile judges no record before its host-enforced deadline
    out = keyturn_cli("reconcile", env=SHORT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_vault_matches_hosts(ctx, [host], USERS)
    records = rec.list_records(ctx.db)
    assert records and all(r.status in ("success", "failed") for r in records), [(r.id, r.status, r.error) for r in records]
    return records


@pytest.mark.parametrize("step", [2, 3])
def test_sigkill_in_the_middle_of_a_command_sequence_loses_no_secret(ctx: Context, host: SandboxHost, keyturn_env: dict[str, str],
                                                                   keyturn_cli, tmp_path: Path, step: int) -> None:  # noqa: ANN001
    """Step 2 typed the new password once (passwd waits for it again); step 3 typed it twice (passwd may finish)."""
    build_inventory(ctx, [host], USERS, platform="custom-ssh")
    make_task(ctx, "crash", [host], USERS, params=HostParams(template="linux-passwd-sudo", delay_time=0, recv_timeout=10))
    proc = _run_until_paused(keyturn_env, tmp_path / "paused", step)
    records = _kill_and_reconcile(proc, ctx, host, keyturn_cli)
    if step == 2:
        # passwd never got its confirmation: the host kept the old password and the record says so.
        assert sorted(r.status for r in records) == ["failed", "failed"]


@pytest.mark.parametrize("step", [3, 4])
def test_sigkill_during_a_self_change_loses_no_secret(ctx: Context, host: SandboxHost, keyturn_env: dict[str, str],
                                                    keyturn_cli, tmp_path: Path, step: int) -> None:  # noqa: ANN001
    """Self-change on an asset with no privileged account: passwd (current, new, retyped) killed mid-way."""
    build_inventory(ctx, [host], USERS, privileged=False)
    make_task(ctx, "crash", [host], USERS, params=HostParams(self_change=True))
    proc = _run_until_paused(keyturn_env, tmp_path / "paused", step)
    records = _kill_and_reconcile(proc, ctx, host, keyturn_cli)
    if step == 3:
        assert sorted(r.status for r in records) == ["failed", "failed"]
