"""Finding 3: a hostile account racing symbolic links in its own ~/.ssh never reaches a root-owned file.

The old key-install script (measured: the attacker won 24 of 25 races) ran as root and wrote, chown-ed and chmod-ed its temp file by name inside the
user-owned ~/.ssh: swapping that file for a link to a root-only file made the file the user's. Here the
target user runs a loop that swaps every keyturn temp file, authorized_keys and ~/.ssh itself for links into
root-owned places while keyturn installs keys again and again; the root-owned files must stay as they were.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from core.drivers.base import APPLIED, open_driver
from core.secretgen import generate_ssh_key
from storage.types import AssetInfo, HostKeyInfo, fingerprint_sha256
from tests.sandbox import _CLEAN_ENV, SandboxHost

pytestmark = pytest.mark.sshd

ATTEMPTS = 25
CANARY = "/etc/keyturn-canary"
CANARY_TEXT = "root only: if you can read this as mallory, keyturn leaked it\n"

# Runs as the target user inside the host: swap anything keyturn may touch for a link to root's files.
ATTACKER = r"""
import os, sys, time
home, canary = sys.argv[1], sys.argv[2]
d = home + "/.ssh"
stop = time.time() + 600
n = 0
while time.time() < stop:
    n += 1
    try:
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if name.startswith(".authorized_keys.keyturn.") and not os.path.islink(p):
                try:
                    os.unlink(p)
                    os.symlink(canary, p)
                except OSError:
                    pass
        if n % 50 == 0:  # authorized_keys itself, briefly: root reading through it would copy root's file
            p = os.path.join(d, "authorized_keys")
            try:
                os.rename(p, p + ".saved")
                os.symlink(canary, p)
                time.sleep(0.002)
                os.unlink(p)
                os.rename(p + ".saved", p)
            except OSError:
                pass
        if n % 97 == 0:  # ~/.ssh itself, swapped for a link to a root-owned directory and back
            try:
                os.rename(d, d + ".real")
                os.symlink("/etc", d)
                time.sleep(0.001)
                os.unlink(d)
                os.rename(d + ".real", d)
            except OSError:
                pass
    except OSError:
        pass
"""


def _asset(h: SandboxHost) -> AssetInfo:
    key_type, b64 = h.host_key.split()[:2]
    return AssetInfo(id=1, name=h.name, address=h.address, port=h.port, platform="linux", active=True,
                     host_keys=(HostKeyInfo(key_type, b64, fingerprint_sha256(b64)),))


def _state(h: SandboxHost) -> tuple:
    ls = h.run(["stat", "-c", "%U:%G %a", CANARY, "/etc", "/etc/shadow"], check=True).stdout
    return ls, h.read_file(CANARY)


def test_racing_symlinks_in_the_users_own_ssh_dir_never_reach_root_files(sandbox_fleet) -> None:  # type: ignore[no-untyped-def]
    h = sandbox_fleet(1, users=["mallory"]).hosts[0]
    h.set_sudo(h.admin_user, "nopasswd")
    h.write_file(CANARY, CANARY_TEXT, mode=0o600)
    before = _state(h)
    home = h.home_of("mallory")
    h.run(["install", "-d", "-m", "700", "-o", "mallory", "-g", "mallory", f"{home}/.ssh"], check=True)
    attacker = subprocess.Popen(
        ["nsenter", "--target", str(h.pid), "--mount", "--wd=/", "--", "setpriv", "--reuid=mallory",
         "--regid=mallory", "--init-groups", "/usr/bin/python3", "-c", ATTACKER, home, CANARY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_CLEAN_ENV)
    outcomes: dict[str, int] = {}
    wins = 0
    try:
        driver = open_driver(_asset(h), h.admin_user, password=h.admin_password)
        try:
            for i in range(ATTEMPTS):
                line = generate_ssh_key(label=f"race-{i}").public_line
                result = driver.install_key("mallory", line, ("replace-ours", "append", "replace-all")[i % 3])
                key = "applied" if result.state == APPLIED else f"{result.state}: {result.error}"
                outcomes[key] = outcomes.get(key, 0) + 1
                # Regular files only: a link the attacker left would show root's file without any leak. The
                # attacker is stopped while root looks: find (as root) saw a regular file that the attacker then
                # swapped for a link before cat opened it, and cat read root's canary: the check's own race.
                attacker.send_signal(signal.SIGSTOP)
                try:
                    keys = h.run(["find", home, "-type", "f", "-exec", "cat", "{}", "+"]).stdout
                    state = _state(h)
                finally:
                    attacker.send_signal(signal.SIGCONT)
                if state != before or CANARY_TEXT.strip() in keys:
                    wins += 1
                    h.run(["chown", "root:root", CANARY, "/etc"])
                    h.run(["chmod", "600", CANARY])
                    h.write_file(CANARY, CANARY_TEXT, mode=0o600)
        finally:
            driver.close()
    finally:
        attacker.kill()
        attacker.wait()
    print(f"{ATTEMPTS} installs under attack: {outcomes}; attacker wins: {wins}")
    assert wins == 0, f"the attacker won {wins} of {ATTEMPTS} races: {outcomes}"
    assert _state(h) == before


def test_key_install_without_a_race_leaves_a_user_owned_file_and_dir(sandbox_host: SandboxHost) -> None:
    h = sandbox_host
    h.set_sudo(h.admin_user, "nopasswd")
    h.run(["rm", "-rf", "/home/alice/.ssh"], check=True)
    driver = open_driver(_asset(h), h.admin_user, password=h.admin_password)
    try:
        key = generate_ssh_key(label="plain")
        result = driver.install_key("alice", key.public_line, "replace-ours")
    finally:
        driver.close()
    assert result.state == APPLIED, result.error
    assert h.authorized_keys("alice") == [key.public_line]
    assert (h.file_owner("/home/alice/.ssh"), h.file_mode("/home/alice/.ssh")) == ("alice", 0o700)
    assert (h.file_owner("/home/alice/.ssh/authorized_keys"), h.file_mode("/home/alice/.ssh/authorized_keys")) == ("alice", 0o600)
    from core.ssh import load_pkey

    assert h.key_works("alice", load_pkey(key.private_openssh, None))
