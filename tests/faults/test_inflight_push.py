"""Defect 1: a push whose end keyturn never saw may still land; reconcile must not judge it before its deadline.

The host's chpasswd is slowed in PAM (pam_exec /bin/sleep before common-password), keyturn's command timeout
is 3 s, so the push outlives keyturn's wait. The record's deadline is command timeout + 2 x 5 s; the host
kills the change itself at command timeout + 5 s. Ground truth: the host accepts what the vault calls current.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from core.context import Context
from core.engine import run_task
from core.reconcile import reconcile
from storage import executions as rec
from tests.conftest import ROOT, module_fleet
from tests.faults.conftest import mismatches, normal_pam, slow_pam
from tests.integration.test_rotation import build_inventory, make_task, reset_host, vault, wait_past_deadlines
from tests.sandbox import SandboxFleet, SandboxHost

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")
COMMAND_TIMEOUT = 3.0
LANDS = 6  # PAM sleep: longer than keyturn waits, shorter than the deadline the host enforces (3 + 5 s)
KILLED = 14  # PAM sleep: longer than the host's own deadline, so the host kills the change first


fleet = module_fleet(2, USERS, doc="Two hosts with alice and bob.")


@pytest.fixture
def hosts(fleet: SandboxFleet) -> Iterator[list[SandboxHost]]:
    """The fleet reset to stock PAM and fresh passwords; PAM restored afterwards too."""
    for h in fleet:
        normal_pam(h)
        reset_host(h, USERS)
    yield list(fleet)
    for h in fleet:
        normal_pam(h)


def _only_record(ctx: Context, execution_id: int) -> rec.RecordInfo:
    [r] = rec.list_records(ctx.db, execution_id=execution_id)
    return r


def test_a_slow_push_that_lands_later_is_settled_success_not_failed(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "slow", [h], ["alice"])
    ctx.settings.command_timeout = COMMAND_TIMEOUT
    slow_pam(h, LANDS)
    info = run_task(ctx, "slow")
    r = _only_record(ctx, info.id)
    assert r.status == "unverified" and "may still apply" in r.error
    early = reconcile(ctx)  # what `task run` and the scheduler do first
    assert (early.probed, early.waiting) == (0, 1)
    assert rec.get_record(ctx.db, r.id).status == "unverified"
    wait_past_deadlines(ctx)
    late = reconcile(ctx)
    assert (late.probed, late.succeeded) == (1, 1)
    candidate = rec.record_secrets(ctx.db, r.id)[1]
    assert vault(ctx, h.name, "alice").secret == candidate
    assert mismatches(ctx, [h], ["alice"]) == []


def test_a_push_slower_than_the_host_deadline_is_killed_on_the_host(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    old = h.passwords["alice"]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "slower", [h], ["alice"])
    ctx.settings.command_timeout = COMMAND_TIMEOUT
    slow_pam(h, KILLED)
    started = time.monotonic()
    info = run_task(ctx, "slower")
    r = _only_record(ctx, info.id)
    assert r.status == "unverified"
    wait_past_deadlines(ctx)
    assert reconcile(ctx).failed == 1  # the host's own deadline stopped chpasswd: the old secret stays
    time.sleep(max(0.0, KILLED + 1 - (time.monotonic() - started)))  # past the time PAM would have finished
    assert h.password_works("alice", old)
    assert vault(ctx, h.name, "alice").secret == old
    assert mismatches(ctx, [h], ["alice"]) == []


def test_a_sigkilled_run_mid_push_is_not_judged_before_the_deadline(ctx: Context, hosts: list[SandboxHost],
                                                                    keyturn_env: dict[str, str], keyturn_cli) -> None:  # noqa: ANN001
    build_inventory(ctx, hosts, USERS)
    make_task(ctx, "killed", hosts, USERS)
    for h in hosts:
        slow_pam(h, LANDS)
    env = {**keyturn_env, "KEYTURN_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT)}
    proc = subprocess.Popen([sys.executable, "-m", "tui", "task", "run", "killed", "--no-reconcile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while not any(r.status == "pushing" for r in rec.list_records(ctx.db)):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started a push"
        time.sleep(0.05)
    time.sleep(1.0)  # the remote chpasswd is now waiting in PAM
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    kills = 1
    first = keyturn_cli("reconcile", env={"KEYTURN_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT)})
    assert "their push may still be running on the host" in first.stdout, first.stdout + first.stderr
    caught = [r for r in rec.list_records(ctx.db) if r.started_at is not None]
    assert caught and all(r.status == "unverified" for r in caught)
    wait_past_deadlines(ctx)
    last = keyturn_cli("reconcile", env={"KEYTURN_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT)})
    assert last.returncode == 0, last.stdout + last.stderr
    assert all(r.status in ("success", "failed") for r in rec.list_records(ctx.db))
    assert mismatches(ctx, hosts, USERS) == [], f"after {kills} kill"


def test_the_privileged_login_account_is_never_lost(ctx: Context, hosts: list[SandboxHost]) -> None:
    """Secure mode off: keyturn changes the account it logs in with; a wrong settle would lock it out."""
    h = hosts[1]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "admin", [h], [h.admin_user])
    ctx.settings.secure_mode = False
    ctx.settings.command_timeout = COMMAND_TIMEOUT
    slow_pam(h, LANDS)
    info = run_task(ctx, "admin")
    assert _only_record(ctx, info.id).status == "unverified"
    assert reconcile(ctx).waiting == 1
    wait_past_deadlines(ctx)
    reconcile(ctx)
    assert mismatches(ctx, [h], [h.admin_user]) == []
    # keyturn can still log in there: a task over alice runs on the admin's vault secret.
    normal_pam(h)
    make_task(ctx, "after", [h], ["alice"])
    assert run_task(ctx, "after").status == "success"
    assert mismatches(ctx, [h], ["alice", h.admin_user]) == []
