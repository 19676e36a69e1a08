"""Interactive changes on real sshd hosts: command sequences on a PTY (custom-ssh), self-change with passwd's
real prompts and real PAM (pam_unix, pam_pwquality), and the user parameters hosts need (useradd, sudoers).

Each test resets the module's hosts and builds its inventory in a fresh database; it asserts what the host
really holds afterwards (a password login, /etc/passwd, `sudo -l` as the user) and that no secret reaches an
error, a log line or an event.
"""

from __future__ import annotations


import pytest

from core.context import Context
from core.drivers.base import DriverError
from core.drivers.custom_ssh import CustomSSHDriver
from core.engine import run_task
from core.errors import InputError
from core.ssh import Timeouts, connect
from core.targets import preview
from storage import executions as rec
from storage.inventory import get_asset, upsert_account
from storage.types import HostParams, TaskSpec
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_rotation import Collect, build_inventory, make_task, vault
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")
FAST = {"delay_time": 0.0, "recv_timeout": 10.0}


fleet = module_fleet(1, USERS, doc="One sandbox host with alice and bob, shared by the module.")


def _stock_pam_no_extras(h: SandboxHost) -> None:
    h.write_file("/etc/pam.d/common-password", STOCK_PAM, mode=0o644, owner="root")
    h.run(["sh", "-c", "rm -f /etc/sudoers.d/keyturn-alice /etc/sudoers.d/keyturn-newbie; "
                       "userdel -r newbie 2>/dev/null; userdel -r Defaults 2>/dev/null; true"])


host = fresh_host(USERS, prepare=_stock_pam_no_extras,
                  doc="The host reset to a known state (stock PAM, no keyturn sudoers entries, no extra users).")


STOCK_PAM = """\
password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt
password\trequisite\t\t\tpam_deny.so
password\trequired\t\t\tpam_permit.so
"""
# pam_pwquality in front of pam_unix, as `pam-auth-update` would enable it (retry=1: refuse at the first try).
PWQUALITY_PAM = """\
password\trequisite\t\t\tpam_pwquality.so retry=1 minlen=16
password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt
password\trequisite\t\t\tpam_deny.so
password\trequired\t\t\tpam_permit.so
"""


def _device_inventory(ctx: Context, h: SandboxHost, users: tuple[str, ...] = USERS) -> None:
    """The sandbox host as a `custom-ssh` asset: kadmin logs in, the sequence changes the others."""
    build_inventory(ctx, [h], users, platform="custom-ssh")


def _no_secret_anywhere(ctx: Context, execution_id: int, secrets: list[str], events: Collect | None = None) -> None:
    texts = [rec.get_execution(ctx.db, execution_id).log]
    texts += [r.error for r in rec.list_records(ctx.db, execution_id=execution_id)]
    texts += events.texts() if events else []
    for secret in secrets:
        assert all(secret not in t for t in texts), "a secret reached a log line, a record error or an event"


# -- command sequences (custom-ssh) -----------------------------------------------------------------
def test_sudo_passwd_template_changes_the_password_through_real_prompts(ctx: Context, host: SandboxHost) -> None:
    old = host.passwords["alice"]
    _device_inventory(ctx, host)
    make_task(ctx, "dev", [host], ["alice"], params=HostParams(template="linux-passwd-sudo", **FAST))
    events = Collect()
    info = run_task(ctx, "dev", on_event=events)
    assert (info.status, info.succeeded) == ("success", 1), rec.list_records(ctx.db)
    new = vault(ctx, "h1", "alice").secret
    assert new and new != old and host.password_works("alice", new) and not host.password_works("alice", old)
    _no_secret_anywhere(ctx, info.id, [new, old, host.admin_password], events)


def test_su_template_answers_su_and_passwd_prompts_with_real_pam(ctx: Context, host: SandboxHost) -> None:
    root_pw = new_password()
    host.set_password("root", root_pw)
    _device_inventory(ctx, host)
    make_task(ctx, "su", [host], ["bob"], become_password=root_pw, params=HostParams(template="linux-passwd-su", **FAST))
    info = run_task(ctx, "su")
    assert info.status == "success", rec.list_records(ctx.db)[0].error
    assert host.password_works("bob", vault(ctx, "h1", "bob").secret)
    _no_secret_anywhere(ctx, info.id, [root_pw, vault(ctx, "h1", "bob").secret])


def test_wrong_su_password_stops_at_its_step_with_the_hosts_message(ctx: Context, host: SandboxHost) -> None:
    host.set_password("root", new_password())
    wrong = new_password()
    old = host.passwords["bob"]
    _device_inventory(ctx, host)
    make_task(ctx, "su", [host], ["bob"], become_password=wrong, params=HostParams(template="linux-passwd-su", **FAST))
    info = run_task(ctx, "su")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed"
    assert r.error.startswith("step 2: ") and "Authentication failure" in r.error, r.error
    assert wrong not in r.error
    assert host.password_works("bob", old) and vault(ctx, "h1", "bob").secret == old


def test_an_answer_that_never_comes_fails_the_step_named_with_what_was_received(ctx: Context, host: SandboxHost) -> None:
    old = host.passwords["alice"]
    _device_inventory(ctx, host)
    make_task(ctx, "pin", [host], ["alice"], params=HostParams(
        commands="sudo passwd {username}\n{password}\n{password}", answers="Enter PIN:", delay_time=0, recv_timeout=2))
    info = run_task(ctx, "pin")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    # Nothing carrying the new password was typed: the host is certainly unchanged, no login needed to say so.
    assert r.status == "failed"
    assert r.error.startswith("step 1: expected 'Enter PIN:' within 2s, received: ") and "New password:" in r.error
    assert host.password_works("alice", old)


def test_the_prompt_coming_back_without_the_answer_fails_at_once(ctx: Context, host: SandboxHost) -> None:
    _device_inventory(ctx, host)
    make_task(ctx, "id", [host], ["alice"], params=HostParams(commands="id {username}", answers="uid=0\\(", delay_time=0,
                                                               recv_timeout=60))
    info = run_task(ctx, "id")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed"
    assert r.error.startswith("step 1: expected 'uid=0\\\\(', received: ") and "(alice)" in r.error, r.error


def test_a_timeout_after_the_change_is_settled_by_logging_in(ctx: Context, host: SandboxHost) -> None:
    _device_inventory(ctx, host)
    make_task(ctx, "slow", [host], ["alice"], params=HostParams(
        template="linux-passwd-sudo", commands="sudo passwd {username}\n{password}\n{password}\nsleep 30",
        answers="(?i)new password: ?$\n(?i)retype new password: ?$\nsuccessfully\n", delay_time=0, recv_timeout=2))
    info = run_task(ctx, "slow")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    # Step 4 timed out, but passwd had finished: the new password logs in, so the record is a success.
    assert r.status == "success", r.error
    assert host.password_works("alice", vault(ctx, "h1", "alice").secret)


def test_an_echoing_device_never_puts_the_secret_in_the_error(ctx: Context, host: SandboxHost) -> None:
    old = host.passwords["alice"]
    _device_inventory(ctx, host)
    # The last step ends when the shell's prompt comes back before 'never' does (a definite mismatch: `failed`).
    # If its recv_timeout ran out first, the push's end was never seen and the record rightly stays `unverified`;
    # a loaded CI machine once took longer than 5 s, so the wait and the change's deadline are far from that.
    ctx.settings.command_timeout = 60.0
    # `read` types back what it reads (a terminal in echo mode), then the shell prints it once more.
    make_task(ctx, "echo", [host], ["alice"], params=HostParams(
        commands="read -r kt_line\n{password}\nprintf 'got-%s\\n' \"$kt_line\"", answers="kt_line\n\nnever", delay_time=0,
        recv_timeout=20))
    events = Collect()
    info = run_task(ctx, "echo", on_event=events)
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    new = rec.record_secrets(ctx.db, r.id)[1]
    assert new is not None  # (never compared by value: pytest would print the secret)
    assert r.status == "failed", r.error  # the sequence never changed anything: the old password still logs in
    assert "step 3: expected 'never', received: " in r.error and "got-<secret>" in r.error, r.error
    _no_secret_anywhere(ctx, info.id, [new, old, host.admin_password], events)
    assert host.password_works("alice", old)


def test_a_value_with_a_newline_is_refused_before_anything_is_sent(host: SandboxHost) -> None:
    client = connect(_asset_info(host), host.admin_user, password=host.admin_password, timeouts=Timeouts())
    driver = CustomSSHDriver(client, login_user=host.admin_user, params=HostParams(
        commands="touch /tmp/keyturn-sent\nsudo passwd {username}\n{password}\n{password}", delay_time=0),
        login_password=host.admin_password)
    try:
        with pytest.raises(DriverError, match="password: contains a line break or NUL; refused before anything was sent"):
            driver.change_password("alice", "first-line\nsecond-line")
        driver.become = "x\r"
        with pytest.raises(DriverError, match="privilege_password: contains"):
            driver.change_password("alice", new_password())
    finally:
        driver.close()
    assert not host.exists("/tmp/keyturn-sent")


def _asset_info(h: SandboxHost):  # noqa: ANN202 - an AssetInfo for driver-level tests
    from storage.types import AssetInfo, HostKeyInfo, fingerprint_sha256

    key_type, b64 = h.host_key.split()[:2]
    return AssetInfo(0, h.name, h.address, h.port, "custom-ssh", True,
                     host_keys=(HostKeyInfo(key_type, b64, fingerprint_sha256(b64)),))


# -- self-change -----------------------------------------------------------------------------------
def _self_inventory(ctx: Context, h: SandboxHost, users: tuple[str, ...] = ("alice",)) -> None:
    """An asset with no privileged account at all: only the accounts themselves."""
    build_inventory(ctx, [h], users, privileged=False)


def test_self_change_without_a_privileged_account_runs_passwd_as_the_account(ctx: Context, host: SandboxHost) -> None:
    old = host.passwords["alice"]
    _self_inventory(ctx, host)
    spec = make_task(ctx, "self", [host], ["alice"], params=HostParams(self_change=True))
    p = preview(ctx, spec)
    assert [(t.username, t.self_change) for t in p.targets] == [("alice", True)]
    assert p.summary() == "1 account on 1 asset; none excluded; 1 will self-change"
    # Without self_change the same account is left out: there is nobody to log in with.
    off = preview(ctx, TaskSpec(name="off", usernames=["alice"], assets=["h1"]))
    assert [e.reason for e in off.excluded] == ["no privileged account on the asset"]
    info = run_task(ctx, "self")
    assert info.status == "success", rec.list_records(ctx.db)[0].error
    new = vault(ctx, "h1", "alice").secret
    assert new != old and host.password_works("alice", new) and not host.password_works("alice", old)
    _no_secret_anywhere(ctx, info.id, [new, old])


def _require_pwquality() -> None:
    import glob
    import os

    if not glob.glob("/lib/*/security/pam_pwquality.so") + glob.glob("/usr/lib/*/security/pam_pwquality.so"):
        reason = "pam_pwquality.so is not installed (make system-deps installs libpam-pwquality)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_pwquality_on_the_host_rejects_a_weak_password_and_the_old_one_is_kept(ctx: Context, host: SandboxHost) -> None:
    _require_pwquality()
    host.write_file("/etc/pam.d/common-password", PWQUALITY_PAM, mode=0o644, owner="root")
    old = host.passwords["alice"]
    weak = "Weak-pass-1"  # 11 characters: pam_pwquality here wants 16
    _self_inventory(ctx, host)
    make_task(ctx, "weak", [host], ["alice"], secret_strategy="specific", specific_secret=weak,
              params=HostParams(self_change=True))
    info = run_task(ctx, "weak")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed"
    assert "the host kept the old one" in r.error and "BAD PASSWORD: The password is shorter than 16 characters" in r.error, r.error
    assert weak not in r.error and old not in r.error
    assert host.password_works("alice", old) and vault(ctx, "h1", "alice").secret == old
    # A password that passes the host's rules goes through the same way.
    make_task(ctx, "strong", [host], ["alice"], params=HostParams(self_change=True))
    assert run_task(ctx, "strong").status == "success"
    assert host.password_works("alice", vault(ctx, "h1", "alice").secret)


# -- user parameters -------------------------------------------------------------------------------
def _user_inventory(ctx: Context, h: SandboxHost, user: str) -> None:
    build_inventory(ctx, [h], ())
    with ctx.db.write() as s:
        from storage.inventory import get_asset_row

        upsert_account(ctx.db, s, get_asset_row(s, h.name), user, secret="not-on-the-host-yet")


def test_create_user_with_shell_home_groups_uid_and_a_sudoers_entry(ctx: Context, host: SandboxHost) -> None:
    _user_inventory(ctx, host, "newbie")
    make_task(ctx, "onboard", [host], ["newbie"], params=HostParams(
        create_user=True, shell="/bin/sh", home="/home/custom-newbie", group="users", groups="adm,staff", uid=23456,
        sudo_commands="/usr/bin/whoami,/usr/bin/id"))
    info = run_task(ctx, "onboard")
    assert info.status == "success", rec.list_records(ctx.db)[0].error
    entry = next(line for line in host.read_file("/etc/passwd").splitlines() if line.startswith("newbie:"))
    fields = entry.split(":")
    assert (fields[2], fields[5], fields[6]) == ("23456", "/home/custom-newbie", "/bin/sh")
    assert host.exists("/home/custom-newbie")
    ids = host.run(["id", "-nG", "newbie"], check=True).stdout.split()
    assert ids[0] == "users" and set(ids) == {"users", "adm", "staff"}
    pw = vault(ctx, "h1", "newbie").secret
    assert host.password_works("newbie", pw)
    code, out, _err = host.ssh_exec("newbie", "sudo -n -l", password=pw)
    assert code == 0
    allowed = [ln.strip() for ln in out.splitlines() if "NOPASSWD" in ln]
    assert allowed == ["(ALL) NOPASSWD: /usr/bin/whoami, /usr/bin/id"], out
    assert host.ssh_exec("newbie", "sudo -n /usr/bin/whoami", password=pw)[1].strip() == "root"
    assert host.ssh_exec("newbie", "sudo -n /bin/cat /etc/shadow", password=pw)[0] != 0
    assert host.file_mode("/etc/sudoers.d/keyturn-newbie") == 0o440
    assert not [n for n in host.run(["ls", "-a", "/etc/sudoers.d"], check=True).stdout.split() if n.startswith(".keyturn")]


def test_a_missing_group_is_named_and_no_user_is_created(ctx: Context, host: SandboxHost) -> None:
    _user_inventory(ctx, host, "newbie")
    make_task(ctx, "onboard", [host], ["newbie"], params=HostParams(create_user=True, groups="adm,nosuchgroup"))
    info = run_task(ctx, "onboard")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed" and r.error == "group nosuchgroup does not exist on the host; the user was not created"
    assert "newbie" not in host.users()


def test_a_bad_sudoers_line_is_refused_before_it_reaches_a_host(ctx: Context, host: SandboxHost) -> None:
    _user_inventory(ctx, host, "newbie")
    for bad in ("whoami", "/bin/sh -c 'id'", "/usr/bin/id, ALL", "/usr/bin/env X=1"):
        with pytest.raises(InputError, match=r"^sudo: "):
            make_task(ctx, "bad", [host], ["newbie"], params=HostParams(create_user=True, sudo_commands=bad))
    with pytest.raises(InputError, match=r"^create_user: "):
        make_task(ctx, "bad", [host], ["newbie"], params=HostParams(shell="/bin/sh"))
    # Past core's check, the driver refuses too, and visudo on the host is the last gate.
    from core.drivers.posix_users import setup_script

    with pytest.raises(DriverError, match="sudo: "):
        setup_script("newbie", HostParams(create_user=True, sudo_commands="ALL"))
    # In sudoers a user called ALL means every user.
    with pytest.raises(DriverError, match="sudo: a user named 'ALL'"):
        setup_script("ALL", HostParams(create_user=True, sudo_commands="/usr/bin/id"))


def test_visudo_on_the_host_refuses_an_entry_and_nothing_changes(ctx: Context, host: SandboxHost) -> None:
    """An entry core's pattern lets through but sudo cannot parse never becomes part of the sudo policy."""
    from core.drivers.posix import PosixDriver

    # A user called "Defaults" passes every name check, but sudoers reads the word as a Defaults line:
    # visudo refuses the entry (checked on this Debian's sudo 1.9), so neither the entry nor the user appears.
    params = HostParams(create_user=True, sudo_commands="/usr/bin/id")
    client = connect(_asset_info(host), host.admin_user, password=host.admin_password, timeouts=Timeouts())
    driver = PosixDriver(client, login_user=host.admin_user, params=params, login_password=host.admin_password)
    try:
        result = driver.change_password("Defaults", new_password())
    finally:
        driver.close()
    assert result.state == "not_applied" and "visudo refused it" in result.error, result
    assert result.error.endswith("the sudoers entry was not written"), result.error
    assert "Defaults" not in host.users()
    assert not host.exists("/etc/sudoers.d/keyturn-Defaults")
    assert not [n for n in host.run(["ls", "-a", "/etc/sudoers.d"], check=True).stdout.split() if n.startswith(".keyturn")]


def test_modify_sudo_rewrites_the_entry_of_an_existing_user(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ("alice",))
    make_task(ctx, "sudo", [host], ["alice"], params=HostParams(modify_sudo=True, sudo_commands="/usr/bin/id"))
    assert run_task(ctx, "sudo").status == "success"
    pw = vault(ctx, "h1", "alice").secret
    out = host.ssh_exec("alice", "sudo -n -l", password=pw)[1]
    assert [ln.strip() for ln in out.splitlines() if "NOPASSWD" in ln] == ["(ALL) NOPASSWD: /usr/bin/id"]


def test_self_change_preview_and_asset_lookup(ctx: Context, host: SandboxHost) -> None:
    """A custom-ssh asset is a supported target: preview lists it instead of excluding the platform."""
    _device_inventory(ctx, host)
    spec = make_task(ctx, "dev", [host], ["alice"], params=HostParams(template="cisco-ios"))
    assert get_asset(ctx.db, "h1").platform == "custom-ssh"
    assert [t.username for t in preview(ctx, spec).targets] == ["alice"]


def test_self_change_runs_passwd_under_a_deadline_the_host_enforces(host: SandboxHost) -> None:
    import time

    from core.drivers.selfchange import SelfChangeDriver, self_sequence

    asset = _asset_info(host)
    asset = type(asset)(**{**asset.__dict__, "platform": "linux"})
    deadline = time.time() + 60
    assert self_sequence("linux", HostParams(), deadline).steps[0].send.startswith("timeout -s KILL 5")
    new = new_password()
    result = SelfChangeDriver(asset, host.passwords["alice"]).change_password("alice", new, deadline=deadline)
    assert (result.state, result.error) == ("applied", "")
    assert host.password_works("alice", new)
    # A deadline already too close: nothing is typed, the host is certainly unchanged.
    late = SelfChangeDriver(asset, new).change_password("alice", new_password(), deadline=time.time() + 1)
    assert late.state == "not_applied" and "deadline came before this line could be typed" in late.error
    assert host.password_works("alice", new)


def test_a_task_over_custom_ssh_assets_needs_a_sequence(ctx: Context, host: SandboxHost) -> None:
    _device_inventory(ctx, host)
    with pytest.raises(InputError, match="^commands: the task covers custom-ssh assets: give commands or a template"):
        make_task(ctx, "none", [host], ["alice"])
