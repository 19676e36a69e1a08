"""No secret leaks from interactive changes: typed sequences (custom-ssh, through su with root's password) and
self-change (passwd with the current password) put no secret in any process's argv or environment, the CLI's
output, the execution log, the hosts' sshd logs, or the database as plaintext.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.context import Context
from storage import executions as rec
from storage.types import HostParams
from tests.conftest import ROOT, module_fleet
from tests.integration.conftest import ProcSampler
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, make_task, reset_host
from tests.sandbox import SandboxFleet, new_password

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")


fleet = module_fleet(2, USERS, doc="Two hosts: h1 is a custom-ssh asset, h2 a linux asset without a privileged account.")


def test_typed_sequences_and_self_change_leak_no_secret(fleet: SandboxFleet, ctx: Context,
                                                        keyturn_env: dict[str, str]) -> None:
    h1, h2 = fleet.hosts
    for h in (h1, h2):
        reset_host(h, USERS)
    root_pw = new_password()
    h1.set_password("root", root_pw)
    build_inventory(ctx, [h1], USERS, platform="custom-ssh")
    make_task(ctx, "typed", [h1], USERS, become_password=root_pw,
              params=HostParams(template="linux-passwd-su", delay_time=0, recv_timeout=10))
    build_inventory(ctx, [h2], USERS, privileged=False)
    make_task(ctx, "own", [h2], USERS, params=HostParams(self_change=True))
    offsets = {h.name: len(h.log()) for h in (h1, h2)}

    sampler = ProcSampler()
    outputs = []
    try:
        for task in ("typed", "own"):
            proc = subprocess.run([sys.executable, "-m", "tui", "task", "run", task], capture_output=True, text=True,
                                  cwd=ROOT, env=keyturn_env, timeout=180)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            outputs += [proc.stdout, proc.stderr]
    finally:
        sampler.stop()
    assert_vault_matches_hosts(ctx, [h1, h2], USERS)

    secrets = {root_pw, h1.admin_password}
    for r in rec.list_records(ctx.db):
        assert r.status == "success", r.error
        secrets.update(s for s in rec.record_secrets(ctx.db, r.id) if s)
    assert len(secrets) == 2 + 8
    seen = b"\n".join(sampler.seen).decode(errors="replace")
    assert "passwd" in seen, "the sampler never caught passwd running: it would prove nothing"
    places = {
        "process argv/environ": seen,
        "CLI output": "\n".join(outputs),
        "execution logs": "\n".join(rec.get_execution(ctx.db, e).log for e in {r.execution_id for r in rec.list_records(ctx.db)}),
        "sshd logs": "\n".join(h.log()[offsets[h.name]:] for h in (h1, h2)),
        "database files": b"".join(p.read_bytes() for p in Path(ctx.settings.home).glob("keyturn.db*")).decode(errors="replace"),
    }
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret was found in {where}"
