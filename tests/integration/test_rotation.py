"""End-to-end rotations against real sshd sandbox hosts: what the hosts really hold afterwards.

One fleet serves the whole module; each test resets the hosts' passwords, keys and sudo rules first and
builds its inventory in a fresh database, so tests stay independent and fast.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from collections.abc import Sequence

import pytest

from core.context import Context
from core.engine import retry_failed, retry_records, run_task
from core.events import AccountPushed, AccountSettled, Event
from core.reconcile import reconcile
from core.secretgen import KEY_MARKER, generate_ssh_key
from core.ssh import load_pkey
from core.tasks import create_task
from storage import executions as rec
from storage.inventory import account_secrets, get_account_row, pin_host_key, secret_history, upsert_account, upsert_asset
from storage.types import AccountSecrets, HostParams, TaskSpec
from tests.conftest import fresh_hosts, module_fleet
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")


# -- helpers shared with the crash-safety and leak tests ---------------------------------------------
def reset_host(h: SandboxHost, users: Sequence[str] = USERS) -> None:
    """Bring a reused host back to a known state: running, fresh passwords, no keys, admin with sudo."""
    h.start()
    h.set_sudo(h.admin_user, "nopasswd")
    h.set_password(h.admin_user, h.admin_password)
    for u in users:
        h.set_password(u, new_password())
        h.run(["rm", "-rf", f"/home/{u}/.ssh"], check=True)


def build_inventory(ctx: Context, hosts: Sequence[SandboxHost], users: Sequence[str] = USERS, *,
                    admin_password: str | None = None, platform: str = "linux", privileged: bool = True) -> None:
    """Assets with pinned host keys, the privileged admin and password accounts, in one transaction.

    privileged=False leaves the admin out: an asset with only the accounts themselves (self-change).
    """
    with ctx.db.write() as s:
        for h in hosts:
            asset, _ = upsert_asset(s, h.name, address=h.address, port=h.port, platform=platform)
            key_type, b64 = h.host_key.split()[:2]
            pin_host_key(s, asset, key_type, b64, "test")
            if privileged:
                upsert_account(ctx.db, s, asset, h.admin_user, secret=admin_password or h.admin_password,
                               privileged=True)
            for u in users:
                upsert_account(ctx.db, s, asset, u, secret=h.passwords[u])


def vault(ctx: Context, asset: str, user: str, secret_type: str = "password") -> AccountSecrets:
    """The account's current secret in the vault."""
    with ctx.db.read() as s:
        acc = get_account_row(s, asset, user, secret_type)
    return account_secrets(ctx.db, acc.id)


def assert_vault_matches_hosts(ctx: Context, hosts: Sequence[SandboxHost], users: Sequence[str] = USERS) -> None:
    """The invariant: every account's real password is the one the vault holds as current."""
    for h in hosts:
        for u in users:
            current = vault(ctx, h.name, u).secret
            assert current is not None and h.password_works(u, current), f"{h.name}/{u}: host and vault disagree"


def wait_past_deadlines(ctx: Context) -> None:
    """Sleep until no open record's push can still be running on its host (its deadline has passed)."""
    import time

    deadlines = [r.deadline_at for r in rec.unsettled_records(ctx.db) if r.deadline_at is not None]
    if deadlines:
        time.sleep(max(0.0, (max(deadlines) - datetime.now(timezone.utc)).total_seconds()) + 0.2)


def make_task(ctx: Context, name: str, hosts: Sequence[SandboxHost], users: Sequence[str] = USERS, **kw: object) -> TaskSpec:
    """Create a task over the given hosts."""
    return create_task(ctx, TaskSpec(name=name, usernames=list(users), assets=[h.name for h in hosts], **kw))  # type: ignore[arg-type]


class Collect:
    """An on_event callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def texts(self) -> list[str]:
        return [e.text() for e in self.events]


fleet = module_fleet(3, USERS, doc="Three sandbox hosts with alice and bob, shared by the module.")


hosts = fresh_hosts(USERS)


# -- passwords -------------------------------------------------------------------------------------
def test_random_passwords_change_on_every_host_and_the_vault_keeps_the_old_ones(ctx: Context, hosts: list[SandboxHost]) -> None:
    old = {(h.name, u): h.passwords[u] for h in hosts for u in USERS}
    build_inventory(ctx, hosts)
    make_task(ctx, "rotate", hosts)
    events = Collect()
    info = run_task(ctx, "rotate", on_event=events)
    assert (info.status, info.total, info.succeeded, info.failed, info.unverified) == ("success", 6, 6, 0, 0)
    for h in hosts:
        for u in USERS:
            new = vault(ctx, h.name, u).secret
            assert new != old[(h.name, u)]
            assert h.password_works(u, new)
            assert not h.password_works(u, old[(h.name, u)])
            with ctx.db.read() as s:
                acc_id = get_account_row(s, h.name, u).id
            assert [secret for _v, _t, secret in secret_history(ctx.db, acc_id)] == [old[(h.name, u)]]
    for r in rec.list_records(ctx.db, execution_id=info.id):
        old_s, new_s = rec.record_secrets(ctx.db, r.id)
        assert (r.status, old_s, new_s) == ("success", old[(r.asset_name, r.username)], vault(ctx, r.asset_name, r.username).secret)
    texts = events.texts()
    assert texts[0].startswith(f"execution {info.id} of rotate started") and "6 accounts on 3 assets" in texts[0]
    assert sum(isinstance(e, AccountSettled) and e.status == "success" for e in events.events) == 6 and texts[-1].startswith(f"execution {info.id} finished: success")
    assert "h1: alice: success" in rec.get_execution(ctx.db, info.id).log


def test_a_specific_password_with_every_symbol_class_reaches_the_host_intact(ctx: Context, hosts: list[SandboxHost]) -> None:
    tricky = "Aa1 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ {{ x }} $HOME $(id) `id` \\n end "
    build_inventory(ctx, hosts[:1])
    make_task(ctx, "specific", hosts[:1], ["alice"], secret_strategy="specific", specific_secret=tricky)
    info = run_task(ctx, "specific")
    assert info.status == "success"
    assert hosts[0].password_works("alice", tricky)
    assert vault(ctx, "h1", "alice").secret == tricky


def test_missing_user_fails_with_a_clear_reason_and_others_still_change(ctx: Context, hosts: list[SandboxHost]) -> None:
    hosts[0].passwords["carol"] = "whatever-1"  # carol is in the inventory but not on the host
    build_inventory(ctx, hosts[:1], ["alice", "carol"])
    make_task(ctx, "ghost", hosts[:1], ["alice", "carol"])
    info = run_task(ctx, "ghost")
    by_user = {r.username: r for r in rec.list_records(ctx.db, execution_id=info.id)}
    assert (info.status, by_user["alice"].status) == ("partial", "success")
    assert (by_user["carol"].status, by_user["carol"].error) == ("failed", "no such user on host")
    assert vault(ctx, "h1", "carol").secret == "whatever-1"


# -- SSH keys --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["replace-ours", "replace-all", "append"])
def test_ssh_key_strategies_write_authorized_keys_atomically_with_the_right_owner_and_mode(
        ctx: Context, hosts: list[SandboxHost], strategy: str) -> None:
    h = hosts[0]
    foreign = generate_ssh_key().public_line.rsplit(" ", 1)[0] + " laptop-of-alice"
    old_ours = generate_ssh_key(label="earlier")
    h.add_authorized_key("alice", foreign)
    h.add_authorized_key("alice", old_ours.public_line)
    build_inventory(ctx, [h], [])
    with ctx.db.write() as s:
        from storage.inventory import get_asset_row

        upsert_account(ctx.db, s, get_asset_row(s, h.name), "alice", secret_type="ssh_key", secret=old_ours.private_openssh)
    make_task(ctx, f"keys-{strategy}", [h], ["alice"], secret_type="ssh_key", ssh_key_strategy=strategy)
    info = run_task(ctx, f"keys-{strategy}")
    assert info.status == "success", rec.list_records(ctx.db, execution_id=info.id)
    new_private = vault(ctx, h.name, "alice", "ssh_key").secret
    assert new_private and new_private != old_ours.private_openssh
    new_key = load_pkey(new_private, None)
    new_line = f"{new_key.get_name()} {new_key.get_base64()}"
    lines = h.authorized_keys("alice")
    assert sum(new_line in ln and KEY_MARKER in ln for ln in lines) == 1
    expected_others = {"replace-ours": [foreign], "replace-all": [], "append": [foreign, old_ours.public_line]}[strategy]
    assert [ln for ln in lines if new_line not in ln] == expected_others
    path = "/home/alice/.ssh/authorized_keys"
    assert (h.file_mode(path), h.file_owner(path)) == (0o600, "alice")
    assert (h.file_mode("/home/alice/.ssh"), h.file_owner("/home/alice/.ssh")) == (0o700, "alice")
    assert h.key_works("alice", new_key)
    assert h.key_works("alice", load_pkey(old_ours.private_openssh, None)) == (strategy == "append")
    leftovers = h.run(["sh", "-c", "ls -a /home/alice/.ssh"]).stdout.split()
    assert sorted(leftovers) == [".", "..", "authorized_keys"]  # no temp file left behind


# -- secure mode, privileged login problems ----------------------------------------------------------
def test_secure_mode_never_changes_the_privileged_account_and_can_be_turned_off(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "with-admin", [h], [h.admin_user, "alice"])
    info = run_task(ctx, "with-admin")
    assert [r.username for r in rec.list_records(ctx.db, execution_id=info.id)] == ["alice"]
    assert h.password_works(h.admin_user, h.admin_password)

    ctx.settings.secure_mode = False
    info = run_task(ctx, "with-admin")
    assert (info.status, info.total) == ("success", 2)
    new_admin = vault(ctx, h.name, h.admin_user).secret
    assert new_admin != h.admin_password and h.password_works(h.admin_user, new_admin)
    assert h.password_works("alice", vault(ctx, h.name, "alice").secret)


def test_a_wrong_privileged_password_fails_the_asset_and_changes_nothing(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    before = h.passwords["alice"]
    build_inventory(ctx, [h], ["alice"], admin_password="not-the-admin-password")
    make_task(ctx, "bad-admin", [h], ["alice"])
    events = Collect()
    info = run_task(ctx, "bad-admin", on_event=events)
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert (info.status, r.status) == ("failed", "failed")
    assert f"login as {h.admin_user} rejected" in r.error
    assert any("h1: FAILED:" in t and "rejected" in t for t in events.texts())
    assert h.password_works("alice", before) and vault(ctx, h.name, "alice").secret == before


def test_sudo_refused_fails_with_the_reason_and_the_host_keeps_the_old_password(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    h.set_sudo(h.admin_user, None)
    before = h.passwords["alice"]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "no-sudo", [h], ["alice"])
    info = run_task(ctx, "no-sudo")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed" and "sudo refused kadmin" in r.error and "may not run sudo" in r.error
    assert h.password_works("alice", before) and vault(ctx, h.name, "alice").secret == before


def test_sudo_that_asks_for_a_password_gets_it_on_stdin(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    h.set_sudo(h.admin_user, "password")
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "sudo-pw", [h], ["alice"])
    info = run_task(ctx, "sudo-pw")
    assert info.status == "success"
    assert h.password_works("alice", vault(ctx, h.name, "alice").secret)


def test_a_host_that_is_down_fails_alone(ctx: Context, hosts: list[SandboxHost]) -> None:
    build_inventory(ctx, hosts)
    hosts[1].stop()
    make_task(ctx, "one-down", hosts)
    info = run_task(ctx, "one-down")
    records = rec.list_records(ctx.db, execution_id=info.id)
    assert (info.status, info.succeeded, info.failed) == ("partial", 4, 2)
    for r in records:
        if r.asset_name == "h2":
            assert r.status == "failed" and "Unable to connect" in r.error
        else:
            assert r.status == "success"
    hosts[1].start()
    assert_vault_matches_hosts(ctx, hosts)


def test_a_changed_host_key_stops_the_asset_showing_both_fingerprints(ctx: Context, hosts: list[SandboxHost]) -> None:
    from storage.types import fingerprint_sha256

    h = hosts[2]
    build_inventory(ctx, [h], ["alice"])
    pinned = fingerprint_sha256(h.host_key.split()[1])
    presented = fingerprint_sha256(h.replace_host_key().split()[1])
    make_task(ctx, "mitm", [h], ["alice"])
    events = Collect()
    info = run_task(ctx, "mitm", on_event=events)
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed" and pinned in r.error and presented in r.error and "keyturn asset trust h3" in r.error
    assert any(pinned in t and presented in t for t in events.texts() if "FAILED" in t)


# -- cancellation, retry, reconcile ----------------------------------------------------------------
def test_cancelling_mid_run_settles_every_record_and_the_vault_matches_the_hosts(ctx: Context, hosts: list[SandboxHost]) -> None:
    ctx.settings.concurrency = 1  # one asset at a time, so the cancel lands at a known point
    build_inventory(ctx, hosts)
    make_task(ctx, "cancel-me", hosts)
    cancel = threading.Event()

    def on_event(event: Event) -> None:
        # Sent from the asset's thread once alice's push ended, when bob's `pushing` step is already on its way.
        if isinstance(event, AccountPushed):
            cancel.set()

    info = run_task(ctx, "cancel-me", cancel=cancel, on_event=on_event)
    records = rec.list_records(ctx.db, execution_id=info.id)
    statuses = sorted(r.status for r in records)
    assert info.status == "cancelled"
    # h1/alice was pushed, and h1/bob was already `pushing` (committed while alice's login ran): both finish.
    assert statuses == ["failed"] * 4 + ["success"] * 2
    assert all(r.error == "cancelled before push" for r in records if r.status == "failed")
    assert_vault_matches_hosts(ctx, hosts)


def _run_with_host_stopped_after_push(ctx: Context, h: SandboxHost, task: str) -> tuple[int, str]:
    """Run a one-account task whose host goes down right after the push: the record ends unverified."""
    def on_event(event: Event) -> None:
        if isinstance(event, AccountPushed):
            h.stop()

    info = run_task(ctx, task, on_event=on_event)
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "unverified" and "could not verify the new secret" in r.error
    return r.id, rec.record_secrets(ctx.db, r.id)[1] or ""


def test_retry_of_an_unverified_record_pushes_the_same_candidate(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    before = h.passwords["alice"]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "flaky", [h], ["alice"])
    record_id, candidate = _run_with_host_stopped_after_push(ctx, h, "flaky")
    assert vault(ctx, h.name, "alice").secret == before  # not confirmed: the vault keeps the old as current
    h.start()
    assert h.password_works("alice", candidate)  # the host did take it
    info = retry_records(ctx, [record_id])
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert (info.trigger, r.status, r.retry_of, r.attempt) == ("retry", "success", record_id, 2)
    assert vault(ctx, h.name, "alice").secret == candidate == rec.record_secrets(ctx.db, r.id)[1]
    assert reconcile(ctx).probed == 0  # the retried record is taken over, not probed again


def test_reconcile_settles_an_unverified_record_once_the_host_is_back(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[1]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "later", [h], ["alice"])
    record_id, candidate = _run_with_host_stopped_after_push(ctx, h, "later")
    summary = reconcile(ctx)
    assert (summary.probed, summary.unverified) == (1, 1)  # still down: stays unverified
    h.start()
    summary = reconcile(ctx)
    assert (summary.probed, summary.succeeded) == (1, 1)
    assert rec.get_record(ctx.db, record_id).status == "success"
    assert vault(ctx, h.name, "alice").secret == candidate and h.password_works("alice", candidate)


def test_retry_of_a_failed_record_uses_a_fresh_secret(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    h.set_sudo(h.admin_user, None)
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "fix-sudo", [h], ["alice"])
    first = run_task(ctx, "fix-sudo")
    [failed] = rec.list_records(ctx.db, execution_id=first.id)
    assert failed.status == "failed"
    h.set_sudo(h.admin_user, "nopasswd")
    info = retry_failed(ctx, "fix-sudo")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert (r.status, r.retry_of) == ("success", failed.id)
    assert rec.record_secrets(ctx.db, r.id)[1] != rec.record_secrets(ctx.db, failed.id)[1]
    assert h.password_works("alice", vault(ctx, h.name, "alice").secret)
    with pytest.raises(Exception, match="already retried"):
        retry_records(ctx, [failed.id])


def test_no_check_after_change_trusts_the_push(ctx: Context, hosts: list[SandboxHost]) -> None:
    h = hosts[0]
    build_inventory(ctx, [h], ["alice"])
    make_task(ctx, "trusting", [h], ["alice"], check_after_change=False, params=HostParams(verify="none"))
    assert run_task(ctx, "trusting").status == "success"
    assert h.password_works("alice", vault(ctx, h.name, "alice").secret)


def test_a_second_run_of_a_running_task_is_refused(ctx: Context, hosts: list[SandboxHost]) -> None:
    from core.errors import KeyturnError
    from storage.locks import acquire_task_lock, release_task_lock

    build_inventory(ctx, hosts[:1], ["alice"])
    spec = make_task(ctx, "busy", hosts[:1], ["alice"])
    assert acquire_task_lock(ctx.db, spec.id, "elsewhere:1:x")
    with pytest.raises(KeyturnError, match=r"task busy is already running \(elsewhere:1:x\)"):
        run_task(ctx, "busy")
    release_task_lock(ctx.db, spec.id, "elsewhere:1:x")


# -- the command line ------------------------------------------------------------------------------
def test_cli_task_run_records_and_retry(ctx: Context, hosts: list[SandboxHost], keyturn_cli) -> None:  # noqa: ANN001
    build_inventory(ctx, hosts[:2], ["alice"])
    make_task(ctx, "cli-run", hosts[:2], ["alice"])
    hosts[1].set_sudo(hosts[1].admin_user, None)
    proc = keyturn_cli("task", "run", "cli-run")
    assert proc.returncode == 1, proc.stderr
    assert "h1: alice: success" in proc.stdout and "h2: alice: failed: sudo refused" in proc.stdout
    assert "retry with: keyturn retry --record" in proc.stdout

    listed = json.loads(keyturn_cli("records", "list", "--task", "cli-run", "--json", check=True).stdout)
    assert {(r["asset"], r["account"], r["status"]) for r in listed} == {("h1", "alice", "success"), ("h2", "alice", "failed")}
    failed_id = next(r["id"] for r in listed if r["status"] == "failed")
    assert keyturn_cli("records", "list", "--status", "failed", check=True).stdout.count("cli-run") == 1

    hosts[1].set_sudo(hosts[1].admin_user, "nopasswd")
    proc = keyturn_cli("retry", "--record", str(failed_id), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["execution"]["status"] == "success" and out["records"][0]["retry_of"] == failed_id
    assert_vault_matches_hosts(ctx, hosts[:2], ["alice"])

    proc = keyturn_cli("task", "run", "cli-run", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["execution"]["succeeded"] == 2
    assert_vault_matches_hosts(ctx, hosts[:2], ["alice"])

    bad = keyturn_cli("retry", "--record", "999")
    assert bad.returncode == 2 and "keyturn: error: record 999: no such change record" in bad.stderr
    assert keyturn_cli("retry").returncode == 2
    assert keyturn_cli("records", "list", "--status", "bogus").returncode == 2


def test_a_push_whose_end_is_lost_stays_unverified_until_reconcile_sees_it_land(ctx: Context, hosts: list[SandboxHost]) -> None:
    """The command times out but still applies later: a working old secret must not settle it as failed."""
    import time

    h = hosts[0]
    h.write_file("/var/tmp/slow-chpasswd", "#!/bin/sh\nsleep 3\nexec chpasswd\n", mode=0o755, owner="root")
    build_inventory(ctx, [h], ["alice"])
    ctx.settings.allowed_programs = "/var/tmp/slow-chpasswd"  # as the protected config file would allow it
    make_task(ctx, "slow", [h], ["alice"], params=HostParams(chpasswd_path="/var/tmp/slow-chpasswd"))
    ctx.settings.command_timeout = 1.0
    info = run_task(ctx, "slow")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "unverified" and "may still apply" in r.error
    candidate = rec.record_secrets(ctx.db, r.id)[1]
    time.sleep(3.5)
    assert h.password_works("alice", candidate)  # it did land, after keyturn had given up waiting
    early = reconcile(ctx)
    assert (early.probed, early.waiting) == (0, 1)  # before the record's deadline it is not judged at all
    deadline = rec.record_deadline(ctx.db, r.id)
    assert deadline is not None
    time.sleep(max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    assert reconcile(ctx).succeeded == 1
    assert vault(ctx, h.name, "alice").secret == candidate
