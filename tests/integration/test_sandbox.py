"""Tests of the real-sshd sandbox hosts themselves (tests/sandbox.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from tests import sandbox
from tests.sandbox import SandboxFleet, SandboxHost, generate_keypair

pytestmark = pytest.mark.sshd

REAL_FILES = [
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow",
    "/etc/ssh/sshd_config", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
    "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/run/utmp",
    "/root/.ssh/authorized_keys",
]
REAL_DIRS = ["/etc/sudoers.d", "/etc/ssh", "/home", "/root/.ssh"]
REAL_PATHS = ["/run/sshd", "/home/alice", "/home/dave", "/var/lib/sudo/lectured/dave"]


def _snapshot() -> dict[str, object]:
    """Bytes-hashes of the machine's real account files and listings of the real dirs."""
    snap: dict[str, object] = {}
    for path in REAL_FILES:
        try:
            snap[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except FileNotFoundError:
            snap[path] = None
    for path in REAL_DIRS:
        try:
            snap[path] = sorted(os.listdir(path))
        except FileNotFoundError:
            snap[path] = None
    for path in REAL_PATHS:
        snap[path] = os.path.lexists(path)
    return snap


def _mnt_ns(pid: int) -> str | None:
    """Mount namespace of a pid, None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in(namespaces: set[str]) -> list[int]:
    """All live pids whose mount namespace is one of `namespaces`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) in namespaces:
            found.append(int(entry))
    return found


def _mount_lines_mentioning(text: str) -> list[str]:
    """mountinfo lines (of every process) that mention `text`."""
    hits = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                hits += [l for l in Path(f"/proc/{entry}/mountinfo").read_text().splitlines() if text in l]
            except OSError:
                pass
    return hits


def _refused(host: SandboxHost) -> bool:
    """True if a TCP connect to the host is refused."""
    try:
        socket.create_connection((host.address, host.port), timeout=2).close()
        return False
    except OSError:
        return True


def test_fleet_basics(sandbox_fleet) -> None:
    """Hosts have distinct endpoints, pinned host keys that sshd really serves, users with passwords."""
    fleet = sandbox_fleet(3, users=["alice", "bob"])
    endpoints = {(h.address, h.port) for h in fleet}
    assert len(endpoints) == 3
    assert [h.name for h in fleet] == ["h1", "h2", "h3"]
    assert len({h.host_key for h in fleet}) == 3
    for h in fleet:
        assert h.address.startswith("127.") and h.host_key.startswith("ssh-ed25519 AAAA")
        assert h.served_host_key() == h.host_key
        assert h.read_file("/etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == h.host_key.split()
        assert h.file_mode("/etc/ssh/ssh_host_ed25519_key") == 0o600
        assert set(h.passwords) == {"kadmin", "alice", "bob"}
        assert h.passwords["kadmin"] == h.admin_password
        for user in ("alice", "bob", "kadmin"):
            assert h.password_works(user, h.passwords[user])
        assert not h.password_works("alice", h.passwords["bob"])
        assert h.sshd_pid is not None and _mnt_ns(h.sshd_pid) == h.mnt_ns == _mnt_ns(h.pid)
        assert h.mnt_ns != _mnt_ns(os.getpid())
    # random passwords differ per host
    assert len({h.passwords["alice"] for h in fleet}) == 3


def test_fixed_password_for_all_users(sandbox_fleet) -> None:
    """password= gives every user on every host that password."""
    fleet = sandbox_fleet(2, users=["alice"], password="Same-Pw-1")
    for h in fleet:
        assert h.passwords["alice"] == "Same-Pw-1"
        assert h.password_works("alice", "Same-Pw-1")


def test_hosts_are_independent(sandbox_fleet) -> None:
    """Users and passwords set on h1 exist on h1 only, not on h2 nor on the real machine."""
    h1, h2 = sandbox_fleet(2, users=["alice"]).hosts
    h1.set_password("alice", "only-on-h1-Pw")
    assert h1.password_works("alice", "only-on-h1-Pw")
    assert not h2.password_works("alice", "only-on-h1-Pw")
    assert h2.password_works("alice", h2.passwords["alice"])

    h1.add_user("carol", "carol-Pw-1")
    assert "carol" in h1.users()
    assert "carol" not in h2.users()
    assert "carol:" not in Path("/etc/passwd").read_text()
    assert h1.password_works("carol", "carol-Pw-1")
    assert not h2.password_works("carol", "carol-Pw-1")
    assert h2.read_file("/home/carol/.bashrc") is None and not h2.exists("/home/carol")
    assert not Path("/home/carol").exists()


def test_real_machine_accounts_untouched(sandbox_fleet) -> None:
    """After heavy use of a fleet and its close(), the real account files are byte-identical."""
    before = _snapshot()
    real_shadow = Path("/etc/shadow").read_bytes()
    fleet = sandbox_fleet(2, users=["alice"])
    h = fleet.hosts[0]
    pkey, line = generate_keypair()
    h.add_user("dave", "dave-Pw-1", sudo="password", authorized_keys=[line])
    h.set_password("root", "root-Pw-1")
    h.add_authorized_key("root", line)
    assert h.password_works("root", "root-Pw-1")
    assert h.key_works("root", pkey)
    assert not h.password_works("alice", "wrong")  # failed login (btmp on a real host)
    rc, _, err = h.ssh_exec("kadmin", "echo alice:via-ssh-Pw | sudo -n chpasswd")
    assert rc == 0, err
    with h.connect("alice", password="via-ssh-Pw") as client:  # pty login: utmp/wtmp/lastlog
        chan = client.invoke_shell()
        chan.send(b"exit\n")
        chan.recv_exit_status()
    assert h.read_file("/etc/shadow") != real_shadow.decode()
    fleet.close()
    assert Path("/etc/shadow").read_bytes() == real_shadow
    assert _snapshot() == before


def test_set_password_new_works_old_fails(sandbox_host: SandboxHost) -> None:
    """set_password (chpasswd inside the host) replaces the password for the next login."""
    h = sandbox_host
    old = h.passwords["alice"]
    assert h.password_works("alice", old)
    old_hash = h.shadow_hash("alice")
    h.set_password("alice", "Brand-new-Pw-2")
    assert h.passwords["alice"] == "Brand-new-Pw-2"
    assert h.shadow_hash("alice") != old_hash
    assert h.password_works("alice", "Brand-new-Pw-2")
    assert not h.password_works("alice", old)


def test_chpasswd_over_ssh_takes_effect(sandbox_host: SandboxHost) -> None:
    """A chpasswd run inside an SSH session (as the engine does) governs the next SSH login."""
    h = sandbox_host
    old = h.passwords["bob"]
    rc, _, err = h.ssh_exec(h.admin_user, "sudo -n chpasswd", input="bob:Rotated-Pw-3\n")
    assert rc == 0, err
    assert h.password_works("bob", "Rotated-Pw-3")
    assert not h.password_works("bob", old)
    # root can do it too once root has a password on this host
    h.set_password("root", "Root-Pw-4")
    rc, _, err = h.ssh_exec("root", "chpasswd", password="Root-Pw-4", input="bob:Again-Pw-5\n")
    assert rc == 0, err
    assert h.password_works("bob", "Again-Pw-5")
    assert not h.password_works("bob", "Rotated-Pw-3")


def test_authorized_key_login(sandbox_host: SandboxHost) -> None:
    """Keys in ~/.ssh/authorized_keys log in (StrictModes yes); other keys do not."""
    h = sandbox_host
    pkey, line = generate_keypair()
    other, _ = generate_keypair()
    assert not h.key_works("alice", pkey)
    h.add_authorized_key("alice", line)
    assert h.key_works("alice", pkey)
    assert not h.key_works("alice", other)
    assert not h.key_works("bob", pkey)
    assert h.authorized_keys("alice") == [line]
    assert h.file_mode("/home/alice") in (0o755, 0o700)
    assert h.file_owner("/home/alice") == "alice"
    assert h.file_group("/home/alice") == "alice"
    assert h.file_mode("/home/alice/.ssh") == 0o700
    assert h.file_owner("/home/alice/.ssh") == "alice"
    assert h.file_mode("/home/alice/.ssh/authorized_keys") == 0o600
    assert h.file_owner("/home/alice/.ssh/authorized_keys") == "alice"
    assert h.file_mode("/home/alice/nope") is None and h.file_owner("/home/alice/nope") is None
    # what the host itself says (inside the namespace)
    res = h.run(["stat", "-c", "%a %U", "/home/alice/.ssh/authorized_keys"], check=True)
    assert res.stdout.split() == ["600", "alice"]

    # a user created with keys and no password: key works, no password does
    pkey2, line2 = generate_keypair()
    h.add_user("erin", authorized_keys=[line2])
    assert h.key_works("erin", pkey2)
    assert "erin" not in h.passwords
    assert not h.password_works("erin", "")
    assert not h.password_works("erin", "*")


def test_key_added_over_ssh_works(sandbox_host: SandboxHost) -> None:
    """A key appended by the user over SSH is honoured (the engine's way of installing keys)."""
    h = sandbox_host
    pkey, line = generate_keypair()
    cmd = ("umask 077; mkdir -p ~/.ssh && cat >> ~/.ssh/authorized_keys")
    rc, _, err = h.ssh_exec("bob", cmd, input=line + "\n")
    assert rc == 0, err
    assert h.key_works("bob", pkey)
    assert h.read_file("/home/bob/.ssh/authorized_keys") == line + "\n"


def test_stop_and_start_keep_key_and_users(sandbox_host: SandboxHost) -> None:
    """stop() makes connections fail; start() brings the same host key and accounts back."""
    h = sandbox_host
    key, pid = h.host_key, h.sshd_pid
    h.set_password("alice", "Persist-Pw-6")
    client = h.connect("alice", password="Persist-Pw-6")  # an open session dies with the host
    h.stop()
    assert h.sshd_pid is None and _mnt_ns(pid) != h.mnt_ns
    assert _refused(h)
    with pytest.raises((OSError, paramiko.SSHException)):
        h.password_works("alice", "Persist-Pw-6")
    with pytest.raises((OSError, paramiko.SSHException, EOFError)):
        client.exec_command("true", timeout=5)[1].channel.recv_exit_status()
    client.close()
    # the host's files are still there while it is down
    assert "alice" in h.users()
    h.start()
    assert h.sshd_pid is not None and h.sshd_pid != pid
    assert h.served_host_key() == key == h.host_key
    assert h.password_works("alice", "Persist-Pw-6")
    h.start()  # idempotent


def test_replace_host_key(sandbox_host: SandboxHost) -> None:
    """replace_host_key serves a new key; a client pinning the old one is refused."""
    h = sandbox_host
    old = h.host_key
    new = h.replace_host_key()
    assert new != old and new.startswith("ssh-ed25519 ") and h.host_key == new
    assert h.served_host_key() == new
    assert h.known_hosts_line == f"[{h.address}]:{h.port} {new}"
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(f"[{h.address}]:{h.port}", *sandbox._split_key(old))
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(h.address, h.port, username="alice", password=h.passwords["alice"],
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()
    assert h.password_works("alice", h.passwords["alice"])  # pins the new key


def test_sudo_modes(sandbox_host: SandboxHost) -> None:
    """Admin has sudo -n; "password" sudo asks for the user's password; plain users have none."""
    h = sandbox_host
    client = h.connect(h.admin_user, password=h.admin_password)
    try:
        _, stdout, stderr = client.exec_command("sudo -n true", timeout=20)
        assert stdout.channel.recv_exit_status() == 0, stderr.read()
        _, stdout, _ = client.exec_command("sudo -n id -u", timeout=20)
        assert stdout.read().strip() == b"0"
    finally:
        client.close()
    assert h.file_mode("/etc/sudoers.d/keyturn-kadmin") == 0o440
    assert h.file_owner("/etc/sudoers.d/keyturn-kadmin") == "root"

    assert h.ssh_exec("alice", "sudo -n true")[0] != 0

    h.add_user("frank", "Frank-Pw-7", sudo="password")
    assert h.ssh_exec("frank", "sudo -n true")[0] != 0
    rc, out, err = h.ssh_exec("frank", "sudo -S -p '' id -u", input="Frank-Pw-7\n")
    assert (rc, out.strip()) == (0, "0"), err
    rc, _, _ = h.ssh_exec("frank", "sudo -S -p '' -k true", input="wrong\n")
    assert rc != 0

    h.set_sudo("alice", "nopasswd")
    assert h.ssh_exec("alice", "sudo -n true")[0] == 0
    h.set_sudo("alice", None)
    assert h.ssh_exec("alice", "sudo -n true")[0] != 0
    # none of it reached the real machine
    assert not Path("/etc/sudoers.d/keyturn-frank").exists()


def test_run_and_files_inside_namespace(sandbox_host: SandboxHost) -> None:
    """run() executes inside the host; read_file/write_file see the host's overlay."""
    h = sandbox_host
    res = h.run(["sh", "-c", "cat /etc/hostname >/dev/null; id -u; readlink /proc/self/ns/mnt"], check=True)
    uid, ns = res.stdout.split()
    assert uid == "0" and ns == h.mnt_ns
    assert h.run(["cat"], input="hello").stdout == "hello"
    h.write_file("/etc/keyturn-probe", "probe\n", mode=0o640, owner="alice")
    assert h.run(["cat", "/etc/keyturn-probe"]).stdout == "probe\n"
    assert (h.file_mode("/etc/keyturn-probe"), h.file_owner("/etc/keyturn-probe")) == (0o640, "alice")
    assert not Path("/etc/keyturn-probe").exists()
    assert h.read_file("/nonexistent/file") is None
    # absolute symlinks resolve inside the host, not on the real machine
    h.run(["ln", "-s", "/etc/keyturn-probe", "/home/alice/link"], check=True)
    assert h.read_file("/home/alice/link") == "probe\n"
    assert "sshd" in os.listdir(h._ns_path("/run"))


def test_two_fleets_at_once(sandbox_fleet) -> None:
    """Two fleets running together never share an address:port and both work."""
    a = sandbox_fleet(2, users=["alice"])
    b = sandbox_fleet(2, users=["alice"])
    endpoints = [(h.address, h.port) for h in [*a, *b]]
    assert len(set(endpoints)) == 4
    for h in [*a, *b]:
        assert h.password_works("alice", h.passwords["alice"])
        assert h.served_host_key() == h.host_key


def test_close_leaves_nothing(sandbox_fleet) -> None:
    """close() kills sshd, sessions and holders, leaves no mounts or dirs, and is idempotent."""
    fleet = sandbox_fleet(3, users=["alice"])
    namespaces = {h.mnt_ns for h in fleet}
    pids = [h.pid for h in fleet] + [h.sshd_pid for h in fleet]
    h = fleet.hosts[0]
    client = h.connect("alice", password=h.passwords["alice"])  # a live session
    _, stdout, _ = client.exec_command("sleep 600 & echo $!")
    session_child = int(stdout.readline())
    assert _mnt_ns(session_child) == h.mnt_ns
    assert _mount_lines_mentioning(str(fleet.dir))  # the overlays exist while running
    assert len(_pids_in(namespaces)) >= 3 + 3 + 1

    fleet.close()
    client.close()
    assert fleet.closed
    assert _pids_in(namespaces) == []
    for pid in pids + [session_child]:
        assert _mnt_ns(pid) not in namespaces
    assert _mount_lines_mentioning(str(fleet.dir)) == []
    assert not fleet.dir.exists()
    assert all(_refused(x) for x in fleet)
    zombies = [l for l in subprocess.run(["ps", "-eo", "stat,comm"], capture_output=True,
                                         text=True).stdout.splitlines() if l.startswith("Z") and "sshd" in l]
    assert zombies == []
    fleet.close()  # idempotent


def test_context_manager(tmp_path: Path) -> None:
    """SandboxFleet works as a context manager with a custom base_dir."""
    sandbox.require_sandbox()
    with SandboxFleet(1, users=["alice"], base_dir=tmp_path) as fleet:
        h = fleet.hosts[0]
        assert fleet.dir.parent == tmp_path.resolve()
        assert h.password_works("alice", h.passwords["alice"])
        ns = h.mnt_ns
    assert fleet.closed and _pids_in({ns}) == [] and not fleet.dir.exists()


_CRASHER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from tests.sandbox import SandboxFleet
fleet = SandboxFleet(2, users=["alice"])
print(fleet.dir, *[h.mnt_ns for h in fleet], flush=True)
time.sleep(600)
"""


def test_holders_clean_up_when_test_process_is_killed() -> None:
    """If the process owning a fleet dies by SIGKILL, the namespaces, mounts and dirs still go away."""
    sandbox.require_sandbox()
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, root], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert line, "crasher did not start a fleet"
        fleet_dir, namespaces = Path(line[0]), set(line[1:])
        assert _pids_in(namespaces)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 90  # a wait, not a figure: the holders' cleanup is slow on a busy machine
    while time.monotonic() < deadline and (_pids_in(namespaces) or fleet_dir.exists()):
        time.sleep(0.1)
    assert _pids_in(namespaces) == []
    assert not fleet_dir.exists()
    assert _mount_lines_mentioning(str(fleet_dir)) == []


def test_requirement_gate_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing requirements skip loudly outside CI and fail in CI."""
    monkeypatch.setattr(sandbox, "missing_requirements", lambda: ["root privileges (running as uid 1000)"])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SKIPPED REAL-SSHD.*root privileges"):
        sandbox.require_sandbox()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI.*root privileges"):
        sandbox.require_sandbox()
    monkeypatch.setattr(sandbox, "missing_requirements", lambda: [])
    sandbox.require_sandbox()  # no-op when everything is there
