"""The AIX driver against recorded AIX 7.2 behaviour.

No AIX host exists here, so this is the one place where a host is faked: a fake SSH channel runs the driver's
real command line with /bin/sh, on a PATH of small stand-ins for the AIX tools (chpasswd, id, lsuser,
mkuser, sudo, chown) that answer with the messages and exit codes AIX gives, and record what they received.
Everything else (the shell script, stdin handling, the result mapping) is the driver's real code.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from core.drivers.aix import AixDriver
from core.drivers.base import AMBIGUOUS, APPLIED, NOT_APPLIED
from storage.types import HostParams

# AIX 7.2 messages, as its tools print them.
NO_USER = '3004-687 User "{user}" does not exist.'
ID_NO_USER = "3004-820 User not found in /etc/passwd file"

# ksh88 (AIX /bin/sh) has `print` as a builtin; dash does not, so the fake shell defines it as a function.
FAKE_SH = """#!/bin/sh
[ "$1" = "-c" ] || exit 99
shift
exec /bin/sh -c 'print() { while [ $# -gt 0 ]; do case $1 in -r) shift;; --) shift; break;; *) break;; esac; done; printf "%s\\n" "$*"; }
'"$1"
"""

TOOLS = {
    # chpasswd -c: set the password and clear all flags (ADMCHG); without -c AIX sets ADMCHG.
    "chpasswd": r"""#!/bin/sh
echo "chpasswd $*" >> "$AIX/argv.log"
flags=ADMCHG; [ "$1" = "-c" ] && flags=
rc=0
while IFS= read -r line || [ -n "$line" ]; do
  user=${line%%:*}
  if grep -qx "$user" "$AIX/users"; then
    printf '%s\n' "$line:$flags" >> "$AIX/security.passwd"
    [ -f "$AIX/fail_chpasswd" ] && { echo "3004-709 Error changing password for $user" >&2; rc=1; }
  else
    echo "3004-687 User \"$user\" does not exist." >&2; rc=1
  fi
done
exit $rc
""",
    "id": r"""#!/bin/sh
echo "id $*" >> "$AIX/argv.log"
user=$2
grep -qx "$user" "$AIX/users" || { echo "3004-820 User not found in /etc/passwd file" >&2; exit 2; }
echo 201
""",
    "lsuser": r"""#!/bin/sh
echo "lsuser $*" >> "$AIX/argv.log"
user=$3
grep -qx "$user" "$AIX/users" || { echo "3004-687 User \"$user\" does not exist." >&2; exit 2; }
echo "$user home=$AIX/home/$user"
""",
    "mkuser": r"""#!/bin/sh
echo "mkuser $*" >> "$AIX/argv.log"
echo "$1" >> "$AIX/users"; mkdir -p "$AIX/home/$1"
""",
    # su as root: runs the user's shell, which starts AIX's /bin/sh (ksh, here the fake sh) on $KT_INNER.
    "su": r"""#!/bin/sh
echo "su $*" >> "$AIX/argv.log"
exec "$AIX/bin/sh" -c "$KT_INNER"
""",
    "chown": r"""#!/bin/sh
echo "chown $*" >> "$AIX/argv.log"
""",
    # sudo from the AIX Toolbox: -n fails without NOPASSWD; -S reads the password from stdin byte by byte.
    "sudo": r"""#!/bin/sh
echo "sudo $*" >> "$AIX/argv.log"
mode=$(cat "$AIX/sudo_mode")
nonint=; fromstdin=; validate=
while [ $# -gt 0 ]; do
  case $1 in
    -n) nonint=1; shift;; -S) fromstdin=1; shift;; -p) shift 2;; -v) validate=1; shift;; --) shift; break;; *) break;;
  esac
done
case $mode in
  denied) echo "Sorry, user admin is not allowed to execute as root on aixhost." >&2; exit 1;;
  password:*)
    [ -n "$nonint" ] && { echo "sudo: a password is required" >&2; exit 1; }
    IFS= read -r pw
    [ "$pw" = "${mode#password:}" ] || { echo "sudo: 1 incorrect password attempt" >&2; exit 1; };;
esac
[ -n "$validate" ] && exit 0
exec "$@"
""",
    "sh": FAKE_SH,
}


class FakeAix:
    """A fake AIX host: a directory with its users, shadow-like password file and the argv of every tool run."""

    def __init__(self, root: Path, users: list[str], sudo_mode: str = "nopasswd") -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        for name, body in TOOLS.items():
            path = self.bin / name
            path.write_text(body)
            path.chmod(0o755)
        (root / "users").write_text("".join(u + "\n" for u in users))
        (root / "sudo_mode").write_text(sudo_mode)
        for u in users:
            (root / "home" / u).mkdir(parents=True)
        self.commands: list[str] = []
        self.stdins: list[str] = []

    def passwords(self) -> list[str]:
        path = self.root / "security.passwd"
        return path.read_text().splitlines() if path.exists() else []

    def argv_log(self) -> str:
        path = self.root / "argv.log"
        return path.read_text() if path.exists() else ""


class FakeChannel:
    """Stands in for paramiko's Channel: runs the command with /bin/sh on the fake host when stdin closes."""

    def __init__(self, host: FakeAix, truncate_stdin_at: int | None) -> None:
        self.host = host
        self.truncate = truncate_stdin_at
        self.status_event = threading.Event()
        self._stdin = b""
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._code = -1

    def settimeout(self, _t: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.command = command
        self.host.commands.append(command)

    def sendall(self, data: bytes) -> None:
        self._stdin += data

    def shutdown_write(self) -> None:
        data = self._stdin if self.truncate is None else self._stdin[: self.truncate]
        self.host.stdins.append(data.decode())
        env = {"PATH": f"{self.host.bin}:/usr/bin:/bin", "AIX": str(self.host.root)}
        proc = subprocess.run(["/bin/sh", "-c", self.command], input=data, capture_output=True, env=env, timeout=30)
        self._out, self._err, self._code = [proc.stdout], [proc.stderr], proc.returncode
        self.status_event.set()

    def recv(self, _n: int) -> bytes:
        return self._out.pop(0) if self._out else b""

    def recv_stderr(self, _n: int) -> bytes:
        return self._err.pop(0) if self._err else b""

    def recv_exit_status(self) -> int:
        return self._code

    def close(self) -> None:
        pass


class FakeClient:
    """Stands in for paramiko.SSHClient: one active transport handing out FakeChannels."""

    def __init__(self, host: FakeAix, truncate_stdin_at: int | None = None) -> None:
        self.host = host
        self.truncate = truncate_stdin_at
        self.closed = False

    def get_transport(self) -> "FakeClient":
        return self

    def is_active(self) -> bool:
        return not self.closed

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        return FakeChannel(self.host, self.truncate)

    def close(self) -> None:
        self.closed = True


def _driver(host: FakeAix, login: str = "root", become: str | None = None, truncate: int | None = None,
            params: HostParams = HostParams()) -> AixDriver:
    return AixDriver(FakeClient(host, truncate), login_user=login, params=params, become=become,  # type: ignore[arg-type]
                     key_marker="keyturn-managed")


PW = "N3w pw $(id) `x` 'q' \"d\" {{ }} \\ ;|&"


def test_password_goes_through_chpasswd_c_on_stdin_only_and_clears_the_admchg_flag(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"])
    result = _driver(host).change_password("alice", PW)
    assert result.state == APPLIED
    assert host.passwords() == [f"alice:{PW}:"]  # flags empty: ADMCHG cleared by -c
    assert "chpasswd -c" in host.argv_log()
    assert PW not in host.argv_log() and all(PW not in c for c in host.commands)
    assert "print -r --" in host.commands[0]  # ksh88 builtin, never an external printf with the secret


def test_an_unknown_user_is_not_applied_with_a_clear_reason(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"])
    result = _driver(host).change_password("bob", PW)
    assert (result.state, result.error) == (NOT_APPLIED, "no such user on host")
    assert host.passwords() == []


def test_a_chpasswd_error_for_an_existing_user_is_ambiguous_so_the_engine_probes(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"])
    (tmp_path / "fail_chpasswd").write_text("")
    result = _driver(host).change_password("alice", PW)
    assert result.state == AMBIGUOUS and "3004-709" in result.error and PW not in result.error


def test_sudo_with_a_password_reads_it_from_stdin_and_never_from_argv(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"], sudo_mode="password:Adm1n pw")
    result = _driver(host, login="admin", become="Adm1n pw").change_password("alice", PW)
    assert result.state == APPLIED and host.passwords() == [f"alice:{PW}:"]
    assert "Adm1n pw" not in host.argv_log() and all("Adm1n pw" not in c for c in host.commands)
    assert host.commands[0] == "sudo -S -p '' -v"  # the become password is checked once per connection
    assert host.commands[1].startswith("sudo -S -p '' -- perl -e ") and " sh -c " in host.commands[1]


def test_sudo_that_needs_no_password_still_gets_a_clean_line_to_chpasswd(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"], sudo_mode="nopasswd")
    result = _driver(host, login="admin", become="Adm1n pw").change_password("alice", PW)
    assert result.state == APPLIED and host.passwords() == [f"alice:{PW}:"]


def test_sudo_refused_is_not_applied(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"], sudo_mode="denied")
    result = _driver(host, login="admin").change_password("alice", PW)
    assert result.state == NOT_APPLIED and "not allowed to execute as root" in result.error
    assert host.passwords() == []


def test_input_cut_short_never_sets_a_truncated_password(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"])
    driver = _driver(host, truncate=len("kt-begin-0123456789abcdef\nalice:N3w"))
    result = driver.change_password("alice", PW)
    assert result.state == NOT_APPLIED and "cut short" in result.error
    assert host.passwords() == []


def test_create_user_uses_mkuser(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, [])
    result = _driver(host, params=HostParams(create_user=True)).change_password("carol", PW)
    assert result.state == APPLIED and "mkuser carol" in host.argv_log() and host.passwords() == [f"carol:{PW}:"]


@pytest.mark.parametrize("strategy,kept", [("replace-ours", ["ssh-ed25519 AAAAother laptop"]), ("replace-all", []),
                                           ("append", ["ssh-ed25519 AAAAother laptop", "ssh-ed25519 AAAAold keyturn-managed"])])
def test_key_install_finds_home_with_lsuser_and_replaces_the_file_atomically(tmp_path: Path, strategy: str,
                                                                           kept: list[str]) -> None:
    host = FakeAix(tmp_path, ["alice"])
    ssh_dir = tmp_path / "home" / "alice" / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "authorized_keys").write_text("ssh-ed25519 AAAAother laptop\nssh-ed25519 AAAAold keyturn-managed\n")
    new_line = "ssh-ed25519 AAAAnew keyturn-managed:task"
    result = _driver(host).install_key("alice", new_line, strategy)
    assert result.state == APPLIED, result.error
    assert (ssh_dir / "authorized_keys").read_text().splitlines() == [*kept, new_line]
    assert stat.S_IMODE(os.stat(ssh_dir / "authorized_keys").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ssh_dir).st_mode) == 0o700
    assert "lsuser -a home alice" in host.argv_log() and "su alice -c" in host.argv_log()  # files written as alice
    assert sorted(p.name for p in ssh_dir.iterdir()) == ["authorized_keys"]  # the temp file was renamed over


def test_key_install_for_an_unknown_user_is_not_applied(tmp_path: Path) -> None:
    host = FakeAix(tmp_path, ["alice"])
    result = _driver(host).install_key("bob", "ssh-ed25519 AAAAnew keyturn-managed", "append")
    assert (result.state, result.error) == (NOT_APPLIED, "no such user on host")


def test_user_names_with_shell_syntax_never_reach_a_command(tmp_path: Path) -> None:
    from core.drivers.base import DriverError

    host = FakeAix(tmp_path, ["alice"])
    with pytest.raises(DriverError, match="invalid user name"):
        _driver(host).change_password("alice;reboot", PW)
    assert host.commands == []
