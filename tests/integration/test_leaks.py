"""No secret leaks: not into any process's argv or environment (ours, sudo's, the hosts' sshd children), not
into the execution log, the events, the CLI's output, the hosts' sshd logs, nor as plaintext in the database.

While `keyturn task run` works, a sampler reads /proc/*/cmdline and /proc/*/environ of every process on the
machine as fast as it can; afterwards every old and new secret (passwords, the sudo password, private keys) is
searched for everywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.context import Context
from storage import executions as rec
from storage.inventory import get_asset_row, upsert_account
from tests.conftest import ROOT, module_fleet
from tests.integration.conftest import ProcSampler
from tests.integration.test_rotation import assert_vault_matches_hosts, build_inventory, make_task, reset_host
from tests.sandbox import SandboxFleet, SandboxHost

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob", "carol")


fleet = module_fleet(3, USERS, doc="Three hosts shared by the module.")


def _needles(secret: str) -> list[str]:
    """What to search for: the secret itself, and for a private key each long line of its body."""
    if "PRIVATE KEY" in secret:
        return [ln for ln in secret.splitlines() if len(ln) >= 40 and "PRIVATE KEY" not in ln]
    return [secret]


def test_no_secret_appears_in_argv_env_logs_events_output_or_plaintext_db(
        fleet: SandboxFleet, ctx: Context, keyturn_env: dict[str, str]) -> None:
    hosts: list[SandboxHost] = list(fleet)
    for h in hosts:
        reset_host(h, USERS)
    hosts[0].set_sudo(hosts[0].admin_user, "password")  # the sudo password travels too
    build_inventory(ctx, hosts, USERS)
    make_task(ctx, "leak", hosts, USERS)
    # A key account as well: private keys must not leak either.
    from core.secretgen import generate_ssh_key

    old_key = generate_ssh_key()
    hosts[1].add_authorized_key("alice", old_key.public_line)
    with ctx.db.write() as s:
        upsert_account(ctx.db, s, get_asset_row(s, hosts[1].name), "alice", secret_type="ssh_key",
                       secret=old_key.private_openssh)
    make_task(ctx, "leak-keys", hosts[1:2], ["alice"], secret_type="ssh_key")
    log_offsets = {h.name: len(h.log()) for h in hosts}

    sampler = ProcSampler()
    outputs = []
    try:
        for task in ("leak", "leak-keys"):
            proc = subprocess.run([sys.executable, "-m", "tui", "task", "run", task], capture_output=True, text=True,
                                  cwd=ROOT, env=keyturn_env, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            outputs += [proc.stdout, proc.stderr]
        listing = subprocess.run([sys.executable, "-m", "tui", "records", "list", "--json"], capture_output=True,
                                 text=True, cwd=ROOT, env=keyturn_env, timeout=60)
        outputs += [listing.stdout, listing.stderr]
    finally:
        sampler.stop()
    assert_vault_matches_hosts(ctx, hosts, USERS)

    secrets: set[str] = {h.admin_password for h in hosts} | {old_key.private_openssh}
    for r in rec.list_records(ctx.db):
        old, new = rec.record_secrets(ctx.db, r.id)
        secrets.update(s for s in (old, new) if s)
    assert len(secrets) == 9 + 9 + 3 + 2  # old and new passwords, the admins' (sudo) passwords, old and new key

    seen = b"\n".join(sampler.seen).decode(errors="replace")
    assert sampler.passes > 10
    assert "chpasswd" in seen, "the sampler never caught a remote command: it would prove nothing"
    places = {
        "process argv/environ": seen,
        "CLI output": "\n".join(outputs),
        "execution logs": "\n".join(rec.get_execution(ctx.db, e).log for e in {r.execution_id for r in rec.list_records(ctx.db)}),
        "sshd logs": "\n".join(h.log()[log_offsets[h.name]:] for h in hosts),
        "database files": b"".join(p.read_bytes() for p in Path(ctx.settings.home).glob("keyturn.db*")).decode(errors="replace"),
    }
    for where, text in places.items():
        for secret in secrets:
            for needle in _needles(secret):
                assert needle not in text, f"a secret was found in {where}"
