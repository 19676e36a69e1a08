"""The issue 16 command forms, run as a user runs them, against a real sshd sandbox host."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pyrage
import pytest

from core import operators as ops
from core.context import Context
from core.mfa import code_at
from storage import executions as rec
from storage.drift import age_keys, get_task_options
from storage.tasks import get_task
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_rotation import build_inventory
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd


fleet = module_fleet(1, ["alice", "bob"], doc="One host with alice and bob.")


host = fresh_host(["alice", "bob"])


def test_task_options_heartbeat_run_and_list(ctx: Context, host: SandboxHost, keyturn_cli) -> None:  # noqa: ANN001
    build_inventory(ctx, [host], ["alice", "bob"])
    keyturn_cli("task", "create", "beat", "--accounts", "alice,bob", "--asset", host.name, "--heartbeat-interval", "6",
                "--window", "Mon-Fri 01:00-05:00 Europe/Berlin", "--window", "Sat 22:00-02:00 UTC",
                "--retries", "2", "--retry-delay", "5", "--send-secrets", check=True)
    opts = get_task_options(ctx.db, get_task(ctx.db, "beat").id)  # type: ignore[arg-type]
    assert (opts.heartbeat_interval_hours, opts.retries, opts.retry_delay_minutes, opts.send_secrets) == (6, 2, 5, True)
    assert opts.windows == ["Mon-Fri 01:00-05:00 Europe/Berlin", "Sat 22:00-02:00 UTC"]
    assert opts.next_heartbeat_at is not None

    bad = keyturn_cli("task", "create", "bad", "--accounts", "alice", "--asset", host.name, "--window", "Mon 9-5 UTC")
    assert bad.returncode == 2 and "window: 'Mon 9-5 UTC'" in bad.stderr and "Traceback" not in bad.stderr
    assert keyturn_cli("task", "show", "bad").returncode != 0  # nothing half-written

    # An edit that changes only options leaves the task's own settings alone.
    keyturn_cli("task", "edit", "beat", "--heartbeat-cron", "0 3 * * *", "--no-windows", check=True)
    opts = get_task_options(ctx.db, get_task(ctx.db, "beat").id)  # type: ignore[arg-type]
    assert (opts.heartbeat_cron, opts.heartbeat_interval_hours, opts.windows) == ("0 3 * * *", None, [])

    ok = keyturn_cli("heartbeat", "run", "beat", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["counts"] == {"ok": 2, "rejected": 0, "locked": 0, "unreachable": 0}
    host.set_password("bob", new_password())
    drift = keyturn_cli("heartbeat", "run", "beat")
    assert drift.returncode == 1 and "rejected" in drift.stdout
    listed = json.loads(keyturn_cli("heartbeat", "list", "--status", "rejected", "--json", check=True).stdout)
    assert [(r["asset"], r["account"], r["status"]) for r in listed] == [(host.name, "bob", "rejected")]


def test_records_ignore_verify_restore_and_age_key(ctx: Context, host: SandboxHost, keyturn_cli) -> None:  # noqa: ANN001
    build_inventory(ctx, [host], ["alice"])
    # A run that fails for alice: the sudo rule is gone, so the host is untouched. (Before any operator is
    # confirmed: afterwards task create and run each ask for a TOTP step-up, issue 11.)
    host.set_sudo(host.admin_user, None)
    keyturn_cli("task", "create", "t", "--accounts", "alice", "--asset", host.name, check=True)
    assert keyturn_cli("task", "run", "t").returncode == 1
    ops.add_operator(ctx, "tester", "tester@example.test")
    enrolment = ops.start_enrolment(ctx, "tester")
    totp = parse_qs(urlparse(enrolment.uri).query)["secret"][0]
    ops.confirm_enrolment(ctx, "tester", code_at(totp, datetime.now(timezone.utc)))
    public = str(pyrage.x25519.Identity.generate().to_public())
    keyturn_cli("operator", "set-age-key", "tester", input=public + "\n", check=True)
    assert age_keys(ctx.db, ["tester"]) == {"tester": public}
    bad = keyturn_cli("operator", "set-age-key", "tester", input="ssh-rsa AAAA\n")
    assert bad.returncode == 2 and "age key:" in bad.stderr

    [r] = rec.list_records(ctx.db, task="t")
    assert r.status == "failed"
    keyturn_cli("records", "ignore", str(r.id), check=True)
    keyturn_cli("records", "unignore", str(r.id), check=True)
    verify = keyturn_cli("records", "verify", str(r.id))
    assert verify.returncode == 1 and "new secret rejected, old secret ok" in verify.stdout

    # The new secret reaches the host by other means; restore makes it current after a TOTP code on stdin.
    new = rec.record_secrets_full(ctx.db, r.id).new or ""
    host.set_password("alice", new)
    later = datetime.now(timezone.utc).timestamp() + 30  # a later time step than the enrolment's code
    code = code_at(totp, datetime.fromtimestamp(later, timezone.utc))
    assert keyturn_cli("records", "restore", str(r.id), input="000000\n").returncode != 0
    done = keyturn_cli("records", "restore", str(r.id), input=code + "\n")
    assert done.returncode == 0, done.stderr
    assert new not in done.stdout + done.stderr
    from tests.integration.test_rotation import vault

    assert vault(ctx, host.name, "alice").secret == new
