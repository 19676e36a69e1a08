"""Real OpenSSH sandbox hosts for integration tests and benchmarks.

Each :class:`SandboxHost` is a real ``/usr/sbin/sshd`` running in its own mount
namespace (``unshare --mount --propagation private``) in which ``/etc``,
``/home``, ``/root``, ``/run`` and ``/var`` are overlay mounts whose upper/work
dirs live in a per-host temp dir.  Users, passwords, sudoers, authorized_keys,
host keys, utmp/wtmp/lastlog and sudo state written on a sandbox host therefore
belong to that host only; the machine's real accounts are never touched.

Layout of a host:

* a *holder* process (``unshare ... python -c _HOLDER``) performs the overlay
  mounts and then sleeps, keeping the namespace alive while sshd is stopped.
  It reads its stdin until EOF: if the test process dies (even by SIGKILL) the
  pipe closes and the holder kills everything in its namespace, unmounts and,
  when orphaned, removes the host dir.  ``SandboxHost.pid`` is the holder pid.
* ``sshd -D -e -f /etc/ssh/sshd_config`` started with ``nsenter --mount`` into
  that namespace; listens on 127.0.0.(10+i):<free port>.
* files are read/written in the namespace through ``/proc/<holder>/root`` (which
  gives the namespace's view of the file system, overlays included), with
  symlinks resolved inside that root; commands run via ``nsenter``.

``UsePAM no``: sshd checks passwords itself against the namespace's
``/etc/shadow`` (yescrypt/sha512 via libcrypt), so ``chpasswd`` run inside the
host takes effect at the next login, and no PAM session modules
(pam_loginuid, pam_systemd, motd, ...) can make logins flaky inside a
container.  ``sudo`` still uses PAM (the namespace's ``/etc/pam.d``).

Requires root, ``/usr/sbin/sshd``, ``unshare``, ``nsenter``, ``chpasswd`` and
overlayfs; see :func:`missing_requirements`.
"""

from __future__ import annotations

import atexit
import errno
import os
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

SSHD = "/usr/sbin/sshd"
ADMIN_USER = "kadmin"
OVERLAY_DIRS: tuple[str, ...] = ("/etc", "/home", "/root", "/run", "/var")
FIRST_UID = 20000
_CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
}
_SUDO_MODES = (None, "nopasswd", "password")

# Ports handed out by this process (never hand the same one out twice).
_PORT_LOCK = threading.Lock()
_USED_PORTS: set[int] = set()

# The namespace holder.  argv: host_dir, sshd argv (tab-joined), then target|upper|work per overlay.
# Protocol on stdin/stdout, one line each: "START" -> "PID <sshd pid>" | "ERR <msg>".
# It is a child subreaper and reaps everything, so killed sessions leave no zombies.
_HOLDER = r"""
import ctypes, os, shutil, signal, sys, time
host_dir, sshd_argv = sys.argv[1], sys.argv[2].split("\t")
specs = [a.split("|", 2) for a in sys.argv[3:]]
signal.signal(signal.SIGINT, signal.SIG_IGN)
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
def say(line):
    os.write(1, (line + "\n").encode())
for target, upper, work in specs:
    opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (target, upper, work)
    if libc.mount(b"overlay", target.encode(), b"overlay", 0, opts.encode()) != 0:
        say("ERROR mount overlay on %s: %s" % (target, os.strerror(ctypes.get_errno())))
        sys.exit(1)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
def reap(*_):
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
signal.signal(signal.SIGCHLD, reap)
myns = os.readlink("/proc/self/ns/mnt")
ppid = os.getppid()
def others():
    me = os.getpid()
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != me:
            try:
                if os.readlink("/proc/%s/ns/mnt" % p) == myns:
                    out.append(int(p))
            except OSError:
                pass
    return out
def parent_gone():
    # EOF on stdin comes as a killed parent's files close, before the kernel reparents its children: the
    # parent may still be our parent then, but it is exiting (PF_EXITING) or a zombie.
    if os.getppid() != ppid:
        return True
    try:
        with open("/proc/%d/stat" % ppid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in ("Z", "X") or bool(int(fields[6]) & 0x4)
def cleanup(*_):
    for _ in range(500):
        pids = others()
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
        reap()
    if parent_gone():  # orphaned: the test process died, clean up after it
        for target, _u, _w in reversed(specs):
            libc.umount2(target.encode(), 2)
        shutil.rmtree(host_dir, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(host_dir))  # the last holder removes the fleet dir
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, cleanup)
def start_sshd():
    log = os.path.join(host_dir, "sshd.log")
    try:
        pid = os.posix_spawn(sshd_argv[0], sshd_argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ], setsid=True, setsigdef=(signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM))
        say("PID %d" % pid)
    except OSError as exc:
        say("ERR %s" % exc)
say("READY %s" % myns)
buf = b""
while True:
    try:
        chunk = os.read(0, 4096)
    except OSError:
        break
    if not chunk:
        break
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        if line.strip() == b"START":
            start_sshd()
        else:
            say("ERR unknown command %r" % line)
cleanup()
"""


def missing_requirements() -> list[str]:
    """Return what this machine lacks to run sandbox hosts (empty list = all good)."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append(f"root privileges (running as uid {os.geteuid()})")
    if not os.access(SSHD, os.X_OK):
        missing.append(f"{SSHD} (install openssh-server)")
    for tool in ("unshare", "nsenter", "chpasswd", "sudo"):
        if shutil.which(tool, path=_CLEAN_ENV["PATH"]) is None:
            missing.append(f"`{tool}` executable")
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            missing.append("overlayfs support in the kernel")
    except OSError:
        missing.append("/proc/filesystems (cannot check overlayfs)")
    return missing


def require_sandbox() -> None:
    """In a pytest context: skip loudly if sandbox hosts cannot run, or fail when $CI is set."""
    import pytest

    missing = missing_requirements()
    if not missing:
        return
    what = "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(
            f"real-sshd sandbox tests cannot run in CI: missing {what}. Run the job as root "
            "with openssh-server, util-linux (unshare/nsenter), passwd and sudo installed; "
            "a skip here would hide untested SSH code.",
            pytrace=False,
        )
    pytest.skip(f"SKIPPED REAL-SSHD SANDBOX TESTS -- missing {what} (needs root + openssh-server)")


def generate_keypair(comment: str = "keyturn-test") -> tuple["paramiko.PKey", str]:
    """A fresh ed25519 client key: (paramiko key, authorized_keys line)."""
    import io

    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    pkey = paramiko.Ed25519Key(file_obj=io.StringIO(pem))
    return pkey, f"{pkey.get_name()} {pkey.get_base64()} {comment}"


def _free_port(address: str) -> int:
    """Pick a TCP port free on `address` and never handed out before by this process."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((address, 0))
                port = s.getsockname()[1]
            if port not in _USED_PORTS:
                _USED_PORTS.add(port)
                return port
    raise RuntimeError(f"no free port found on {address}")


def _new_host_key() -> tuple[bytes, str]:
    """Generate an ed25519 host key: (OpenSSH private key bytes, public line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, public


def new_password() -> str:
    """Random password safe for chpasswd (letters, digits, '-', '_')."""
    return secrets.token_urlsafe(12)


def _check_name(name: str) -> None:
    """Reject user names that would break passwd/sudoers files."""
    ok = name and len(name) <= 32 and name[0].isalpha() and all(c.isalnum() or c in "_-" for c in name)
    if not ok or not name.isascii():
        raise ValueError(f"invalid user name {name!r}")


def _check_password(password: str) -> None:
    """Reject passwords chpasswd cannot take."""
    if "\n" in password or "\r" in password or "\0" in password or not password:
        raise ValueError("password must be non-empty and single-line")


def _sshd_config(address: str, port: int, host_dir: Path) -> str:
    """The sshd_config of one sandbox host."""
    return f"""\
# keyturn sandbox host ({host_dir})
ListenAddress {address}
Port {port}
AddressFamily inet
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile {host_dir}/sshd.pid
MaxStartups 1000:30:2000
MaxSessions 200
MaxAuthTries 6
LoginGraceTime 60
UseDNS no
UsePAM no
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin yes
StrictModes yes
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""


@dataclass
class SandboxHost:
    """One real sshd in its own mount namespace (see module docstring)."""

    name: str
    address: str
    port: int
    dir: Path
    host_key: str = ""
    admin_user: str = ADMIN_USER
    admin_password: str = ""
    pid: int = 0  # pid of the namespace holder process (stable across stop/start)
    passwords: dict[str, str] = field(default_factory=dict)  # user -> current password
    mnt_ns: str = ""  # "mnt:[inode]" of the host's mount namespace
    _holder: subprocess.Popen | None = field(default=None, repr=False)
    _sshd: int | None = field(default=None, repr=False)  # pid of the listening sshd
    _rbuf: bytes = field(default=b"", repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # ------------------------------------------------------------------ info
    @property
    def sshd_pid(self) -> int | None:
        """Pid of the listening sshd, None while stopped."""
        if self._sshd is None:
            return None
        try:
            state = Path(f"/proc/{self._sshd}/stat").read_text().rsplit(")", 1)[1].split()[0]
            alive = state not in ("Z", "X") and os.readlink(f"/proc/{self._sshd}/ns/mnt") == self.mnt_ns
        except (OSError, IndexError):
            alive = False
        return self._sshd if alive else None

    @property
    def known_hosts_line(self) -> str:
        """known_hosts entry pinning this host's current key ("[addr]:port ssh-ed25519 ...")."""
        return f"[{self.address}]:{self.port} {self.host_key}"

    @property
    def log_path(self) -> Path:
        """sshd's log (stderr of `sshd -D -e`)."""
        return self.dir / "sshd.log"

    def log(self) -> str:
        """Contents of the sshd log."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ lifecycle
    def _boot(self) -> None:
        """Prepare overlay dirs, start the namespace holder, write sshd config and host key."""
        self.dir.mkdir(parents=True, exist_ok=True)
        private, public = _new_host_key()
        specs = []
        for target in OVERLAY_DIRS:
            tag = target.strip("/").replace("/", "_")
            upper, work = self.dir / f"{tag}.upper", self.dir / f"{tag}.work"
            upper.mkdir()
            work.mkdir()
            st = os.stat(target)  # the overlay root takes mode/owner from the upper dir
            os.chown(upper, st.st_uid, st.st_gid)
            os.chmod(upper, stat.S_IMODE(st.st_mode))
            specs.append(f"{target}|{upper}|{work}")
        # Pre-populate the /etc and /run upper dirs before mounting.
        etc_ssh = self.dir / "etc.upper" / "ssh"
        etc_ssh.mkdir(mode=0o755)
        os.chmod(etc_ssh, 0o755)
        (etc_ssh / "sshd_config").write_text(_sshd_config(self.address, self.port, self.dir))
        os.chmod(etc_ssh / "sshd_config", 0o644)
        _write_private(etc_ssh / "ssh_host_ed25519_key", private)
        (etc_ssh / "ssh_host_ed25519_key.pub").write_text(public + "\n")
        run_sshd = self.dir / "run.upper" / "sshd"
        run_sshd.mkdir()
        os.chmod(run_sshd, 0o755)
        self.host_key = public

        holder_log = open(self.dir / "holder.log", "ab")
        try:
            self._holder = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--",
                 sys.executable, "-I", "-S", "-c", _HOLDER, str(self.dir),
                 "\t".join([SSHD, "-D", "-e", "-f", "/etc/ssh/sshd_config"]), *specs],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=holder_log,
                env=_CLEAN_ENV, start_new_session=True,
            )
        finally:
            holder_log.close()
        self.pid = self._holder.pid
        line = self._holder_line(timeout=30)
        if not line.startswith("READY "):
            raise RuntimeError(
                f"{self.name}: namespace holder failed: {line or 'timeout'}; "
                f"{(self.dir / 'holder.log').read_text(errors='replace')}"
            )
        self.mnt_ns = line.split(" ", 1)[1]

    def _holder_line(self, timeout: float) -> str:
        """Read one reply line from the holder ("" on timeout or EOF)."""
        assert self._holder is not None and self._holder.stdout is not None
        fd = self._holder.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._rbuf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self._rbuf += chunk
        line, self._rbuf = self._rbuf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def start(self) -> None:
        """Start sshd (no-op if running) and wait until it accepts TCP connections."""
        with self._lock:
            if self.sshd_pid is not None:
                return
            if self._holder is None:
                raise RuntimeError(f"{self.name}: fleet is closed")
            for attempt in range(5):
                assert self._holder.stdin is not None
                self._holder.stdin.write(b"START\n")
                self._holder.stdin.flush()
                reply = self._holder_line(timeout=10)
                if not reply.startswith("PID "):
                    raise RuntimeError(f"{self.name}: could not spawn sshd: {reply or 'no reply'}")
                self._sshd = int(reply.split()[1])
                if self._wait_listening(timeout=20):
                    return
                tail = self.log()[-2000:]
                self._kill_namespace_processes()
                if "Address already in use" in tail and attempt < 4:
                    self.port = _free_port(self.address)  # someone took our port: move
                    self.write_file("/etc/ssh/sshd_config", _sshd_config(self.address, self.port, self.dir))
                    continue
                raise RuntimeError(f"{self.name}: sshd did not come up on {self.address}:{self.port}:\n{tail}")

    def _wait_listening(self, timeout: float) -> bool:
        """Poll until sshd accepts a TCP connection (False if it died or timed out)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self.sshd_pid is None:
                return False
            try:
                with socket.create_connection((self.address, self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        return False

    def stop(self) -> None:
        """Take the host down: kill sshd and every session/process in the namespace."""
        with self._lock:
            self._kill_namespace_processes()

    def _namespace_pids(self) -> list[int]:
        """Pids of all processes in this host's mount namespace except the holder."""
        pids = []
        if not self.mnt_ns:
            return pids
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.pid:
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.mnt_ns:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def _kill_namespace_processes(self) -> None:
        """SIGKILL everything in the namespace but the holder (which reaps them)."""
        deadline = time.monotonic() + 10
        while True:
            pids = self._namespace_pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: processes {pids} survive SIGKILL")
            time.sleep(0.01)
        self._sshd = None

    def replace_host_key(self) -> str:
        """Install a fresh ed25519 host key, restart sshd and return the new public line."""
        with self._lock:
            private, public = _new_host_key()
            self.write_file("/etc/ssh/ssh_host_ed25519_key", private, mode=0o600, owner="root")
            self.write_file("/etc/ssh/ssh_host_ed25519_key.pub", public + "\n", mode=0o644, owner="root")
            self.host_key = public
            self.stop()
            self.start()
            return public

    def _shutdown(self) -> None:
        """Kill sshd and the holder (the namespace and its mounts vanish with them)."""
        with self._lock:
            if self._holder is None:
                return
            try:
                self._kill_namespace_processes()
            finally:
                holder, self._holder = self._holder, None
                try:
                    if holder.stdin is not None:
                        holder.stdin.close()  # EOF: the holder cleans up and exits
                    holder.wait(timeout=5)
                    if holder.stdout is not None:
                        holder.stdout.close()
                except (subprocess.TimeoutExpired, OSError):
                    holder.kill()
                    holder.wait(timeout=5)

    # ------------------------------------------------------------ file system
    def _ns_path(self, path: str) -> str:
        """Map an absolute in-host path to /proc/<holder>/root/..., resolving symlinks inside the host."""
        if not path.startswith("/"):
            raise ValueError(f"absolute path required: {path!r}")
        root = f"/proc/{self.pid}/root"
        todo = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = root + "/" + "/".join(done + [part])
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                done.append(part)
                done.extend(todo)
                break
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, "too many symlinks", path)
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return root + "/" + "/".join(done)

    def read_file(self, path: str) -> str | None:
        """Text of `path` as the host sees it, None if it does not exist."""
        data = self.read_bytes(path)
        return None if data is None else data.decode(errors="surrogateescape")

    def read_bytes(self, path: str) -> bytes | None:
        """Bytes of `path` as the host sees it, None if it does not exist."""
        try:
            with open(self._ns_path(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, path: str) -> bool:
        """Whether `path` exists on the host (symlinks followed)."""
        return os.path.exists(self._ns_path(path))

    def _stat(self, path: str) -> os.stat_result | None:
        """stat() of `path` on the host (symlinks followed), None if missing."""
        try:
            return os.stat(self._ns_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def file_mode(self, path: str) -> int | None:
        """Permission bits (e.g. 0o600) of `path` on the host, None if missing."""
        st = self._stat(path)
        return None if st is None else stat.S_IMODE(st.st_mode)

    def file_owner(self, path: str) -> str | None:
        """Owner name of `path` per the host's own /etc/passwd (uid as text if unknown)."""
        st = self._stat(path)
        if st is None:
            return None
        for entry in self._passwd():
            if int(entry[2]) == st.st_uid:
                return entry[0]
        return str(st.st_uid)

    def file_group(self, path: str) -> str | None:
        """Group name of `path` per the host's own /etc/group (gid as text if unknown)."""
        st = self._stat(path)
        if st is None:
            return None
        for line in (self.read_file("/etc/group") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) == st.st_gid:
                return parts[0]
        return str(st.st_gid)

    def write_file(self, path: str, content: str | bytes, *, mode: int | None = None,
                   owner: str | None = None) -> None:
        """Write `path` on the host (creating it; keeps mode/owner unless given); owner is a host user."""
        data = content.encode() if isinstance(content, str) else content
        real = self._ns_path(path)
        with self._lock:
            fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is None else mode)
            try:
                os.write(fd, data)
                if mode is not None:
                    os.fchmod(fd, mode)
                if owner is not None:
                    uid, gid = self.uid_gid(owner)
                    os.fchown(fd, uid, gid)
            finally:
                os.close(fd)

    def uid_gid(self, user: str) -> tuple[int, int]:
        """(uid, gid) of `user` on this host."""
        for entry in self._passwd():
            if entry[0] == user:
                return int(entry[2]), int(entry[3])
        raise KeyError(f"{self.name}: no user {user!r}")

    def home_of(self, user: str) -> str:
        """Home directory of `user` on this host."""
        for entry in self._passwd():
            if entry[0] == user:
                return entry[5]
        raise KeyError(f"{self.name}: no user {user!r}")

    def users(self) -> list[str]:
        """All account names in the host's /etc/passwd."""
        return [e[0] for e in self._passwd()]

    def _passwd(self) -> list[list[str]]:
        """Parsed /etc/passwd of the host."""
        out = []
        for line in (self.read_file("/etc/passwd") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 7:
                out.append(parts)
        return out

    def shadow_hash(self, user: str) -> str | None:
        """The password hash field of `user` in the host's /etc/shadow."""
        for line in (self.read_file("/etc/shadow") or "").splitlines():
            parts = line.split(":")
            if parts[0] == user and len(parts) > 1:
                return parts[1]
        return None

    def authorized_keys(self, user: str) -> list[str]:
        """Non-comment lines of ~user/.ssh/authorized_keys on the host."""
        text = self.read_file(f"{self.home_of(user)}/.ssh/authorized_keys") or ""
        return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    # ------------------------------------------------------------ commands
    def run(self, argv: list[str], input: str | None = None, *, check: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `argv` inside the host's namespace as root (text mode, output captured)."""
        return subprocess.run(
            ["nsenter", "--target", str(self.pid), "--mount", "--wd=/", "--", *argv],
            input=input, capture_output=True, text=True, env=_CLEAN_ENV,
            check=check, timeout=timeout,
        )

    # ------------------------------------------------------------ accounts
    def add_user(self, name: str, password: str | None = None, *, sudo: str | None = None,
                 authorized_keys: list[str] | None = None) -> None:
        """Create `name` (home /home/name, shell /bin/bash); sudo: None, "nopasswd" or "password"."""
        self._add_users([(name, password, sudo, authorized_keys)])

    def _add_users(self, specs: Sequence[tuple[str, str | None, str | None, list[str] | None]]) -> None:
        """Create several users with one write per account file and one chpasswd."""
        for name, password, sudo, _keys in specs:
            _check_name(name)
            if password is not None:
                _check_password(password)
            if sudo not in _SUDO_MODES:
                raise ValueError(f"sudo must be one of {_SUDO_MODES}, not {sudo!r}")
        with self._lock:
            passwd = self._passwd()
            existing = {e[0] for e in passwd}
            ids = {int(e[2]) for e in passwd} | {int(e[3]) for e in passwd}
            for line in (self.read_file("/etc/group") or "").splitlines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[2].isdigit():
                    ids.add(int(parts[2]))
                existing.add(parts[0])
            today = int(time.time() // 86400)
            pw_lines, grp_lines, sh_lines, gsh_lines = [], [], [], []
            created: list[tuple[str, int, str, list[str] | None]] = []
            next_id = FIRST_UID
            for name, _password, _sudo, keys in specs:
                if name in existing:
                    raise ValueError(f"{self.name}: user or group {name!r} already exists")
                existing.add(name)
                while next_id in ids:
                    next_id += 1
                uid = next_id
                ids.add(uid)
                home = f"/home/{name}"
                pw_lines.append(f"{name}:x:{uid}:{uid}:keyturn sandbox user:{home}:/bin/bash\n")
                grp_lines.append(f"{name}:x:{uid}:\n")
                sh_lines.append(f"{name}:*:{today}:0:99999:7:::\n")
                gsh_lines.append(f"{name}:!::\n")
                created.append((name, uid, home, keys))
            self._append("/etc/passwd", "".join(pw_lines))
            self._append("/etc/group", "".join(grp_lines))
            self._append("/etc/shadow", "".join(sh_lines))
            if self.exists("/etc/gshadow"):
                self._append("/etc/gshadow", "".join(gsh_lines))
            for _name, uid, home, keys in created:
                real_home = self._ns_path(home)
                os.mkdir(real_home, 0o755)
                os.chmod(real_home, 0o755)
                os.chown(real_home, uid, uid)
                if keys:
                    self._install_keys(home, uid, uid, keys)
            for name, _password, sudo, _keys in specs:
                if sudo is not None:
                    self.set_sudo(name, sudo)
            # Bulk creation hashes with SHA-512 (cheap); set_password() uses the host's PAM default.
            self._chpasswd([(name, pw) for name, pw, _s, _k in specs if pw is not None],
                           fast=len(specs) > 1)

    def _append(self, path: str, text: str) -> None:
        """Append `text` to a host file, adding a newline first if the file lacks one."""
        if not text:
            return
        real = self._ns_path(path)
        with open(real, "rb+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(text.encode())

    def _install_keys(self, home: str, uid: int, gid: int, keys: Iterable[str]) -> None:
        """Create ~/.ssh (0700) and append keys to authorized_keys (0600), owned by the user."""
        ssh_dir = self._ns_path(f"{home}/.ssh")
        if not os.path.isdir(ssh_dir):
            os.mkdir(ssh_dir, 0o700)
        os.chmod(ssh_dir, 0o700)
        os.chown(ssh_dir, uid, gid)
        ak = ssh_dir + "/authorized_keys"
        with open(ak, "a") as f:
            for key in keys:
                f.write(key.strip() + "\n")
        os.chmod(ak, 0o600)
        os.chown(ak, uid, gid)

    def add_authorized_key(self, user: str, key: str) -> None:
        """Append a public key line to ~user/.ssh/authorized_keys on the host."""
        with self._lock:
            uid, gid = self.uid_gid(user)
            self._install_keys(self.home_of(user), uid, gid, [key])

    def set_sudo(self, user: str, mode: str | None) -> None:
        """Give `user` sudo ("nopasswd" / "password") via /etc/sudoers.d, or remove it (None)."""
        if mode not in _SUDO_MODES:
            raise ValueError(f"sudo must be one of {_SUDO_MODES}, not {mode!r}")
        path = f"/etc/sudoers.d/keyturn-{user}"  # no '.' in the name: sudo would skip it
        if mode is None:
            try:
                os.unlink(self._ns_path(path))
            except FileNotFoundError:
                pass
            return
        rule = "NOPASSWD: ALL" if mode == "nopasswd" else "ALL"
        self.write_file(path, f"{user} ALL=(ALL:ALL) {rule}\n", mode=0o440, owner="root")

    def set_password(self, user: str, password: str) -> None:
        """Set `user`'s password with chpasswd (stdin) inside the host."""
        _check_password(password)
        with self._lock:
            self._chpasswd([(user, password)])

    def _chpasswd(self, pairs: list[tuple[str, str]], fast: bool = False) -> None:
        """One chpasswd run inside the namespace for all pairs (fast: SHA-512, not PAM's yescrypt)."""
        if not pairs:
            return
        argv = ["chpasswd", "-c", "SHA512"] if fast else ["chpasswd"]
        res = self.run(argv, input="".join(f"{u}:{p}\n" for u, p in pairs))
        if res.returncode != 0:
            raise RuntimeError(f"{self.name}: chpasswd failed ({res.returncode}): {res.stderr.strip()}")
        for u, p in pairs:
            self.passwords[u] = p

    # ------------------------------------------------------------ SSH probes
    def _client(self) -> "paramiko.SSHClient":
        """A paramiko client that pins this host's current key."""
        import paramiko

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.get_host_keys().add(
            f"[{self.address}]:{self.port}", *_split_key(self.host_key)
        )
        return client

    def connect(self, user: str, password: str | None = None, pkey: "paramiko.PKey | None" = None,
                timeout: float = 15) -> "paramiko.SSHClient":
        """Open an authenticated paramiko SSHClient (host key pinned); caller closes it."""
        client = self._client()
        try:
            client.connect(
                self.address, self.port, username=user, password=password, pkey=pkey,
                look_for_keys=False, allow_agent=False, timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout,
            )
        except BaseException:
            client.close()
            raise
        return client

    def password_works(self, user: str, password: str) -> bool:
        """Real SSH password login; False on auth failure, raises if the host is unreachable."""
        import paramiko

        try:
            self.connect(user, password=password).close()
            return True
        except paramiko.AuthenticationException:
            return False

    def key_works(self, user: str, pkey: "paramiko.PKey") -> bool:
        """Real SSH public-key login; False on auth failure, raises if the host is unreachable."""
        import paramiko

        try:
            self.connect(user, pkey=pkey).close()
            return True
        except paramiko.AuthenticationException:
            return False

    def ssh_exec(self, user: str, command: str, *, password: str | None = None,
                 pkey: "paramiko.PKey | None" = None, input: str | None = None,
                 timeout: float = 30) -> tuple[int, str, str]:
        """Run `command` over a real SSH session; returns (exit status, stdout, stderr)."""
        if password is None and pkey is None:
            password = self.passwords[user]
        client = self.connect(user, password=password, pkey=pkey, timeout=timeout)
        try:
            stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            if input is not None:
                stdin.write(input)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            return stdout.channel.recv_exit_status(), out, err
        finally:
            client.close()

    def served_host_key(self, timeout: float = 10) -> str:
        """The host key line sshd actually presents right now (no authentication)."""
        import paramiko

        with socket.create_connection((self.address, self.port), timeout=timeout) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=timeout)
                key = transport.get_remote_server_key()
                return f"{key.get_name()} {key.get_base64()}"
            finally:
                transport.close()


def _split_key(line: str) -> tuple[str, "paramiko.PKey"]:
    """("ssh-ed25519", PKey) from an "ssh-ed25519 AAAA..." line."""
    import paramiko

    kind, b64 = line.split()[:2]
    return kind, paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64))


def _write_private(path: Path, data: bytes) -> None:
    """Write a root-only (0600) file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _address(index: int) -> str:
    """Loopback address of host `index` (1-based): 127.0.0.11, 127.0.0.12, ..."""
    n = 10 + index
    if n >= 256 * 256:
        raise ValueError("too many sandbox hosts")
    return f"127.0.{n // 256}.{n % 256}"


class SandboxFleet:
    """A set of started sandbox hosts; a context manager, closed at exit at the latest.

    Every host gets `users`, each with `password` if given, else a random
    password per host and user; the current passwords are in
    ``host.passwords[user]``.  Every host also has ``host.admin_user``
    ("kadmin", sudo NOPASSWD: ALL) with a random ``host.admin_password``.
    Host i (1-based) is "h<i>" on 127.0.0.(10+i) with a free port chosen per
    host.  Initial passwords are hashed with SHA-512 (fast start-up); later
    set_password()/chpasswd calls use the host's PAM default (yescrypt).
    """

    def __init__(self, count: int, users: Sequence[str] = (), password: str | None = None,
                 base_dir: Path | None = None, *, workers: int | None = None) -> None:
        """Start `count` hosts in parallel and wait until all accept connections."""
        if count < 1:
            raise ValueError("count must be >= 1")
        missing = missing_requirements()
        if missing:
            raise RuntimeError("cannot start sandbox hosts, missing: " + "; ".join(missing))
        if password is not None:
            _check_password(password)
        for u in users:
            _check_name(u)
        if ADMIN_USER in users:
            raise ValueError(f"{ADMIN_USER!r} is the admin account; it is always created")
        self.hosts: list[SandboxHost] = []
        self._closed = False
        self._close_lock = threading.Lock()
        if base_dir is not None:
            Path(base_dir).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="keyturn-sandbox-", dir=base_dir)).resolve()
        for target in OVERLAY_DIRS:
            if self.dir == Path(target) or Path(target) in self.dir.parents:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise ValueError(f"base_dir {self.dir} lies under overlaid {target}; use e.g. /tmp")
            if any(c in str(self.dir) for c in ":,|\n"):
                shutil.rmtree(self.dir, ignore_errors=True)
                raise ValueError(f"base_dir {self.dir} contains characters overlayfs options cannot take")
        os.chmod(self.dir, 0o711)
        atexit.register(self.close)
        for i in range(1, count + 1):
            address = _address(i)
            self.hosts.append(SandboxHost(
                name=f"h{i}", address=address, port=_free_port(address), dir=self.dir / f"h{i}",
                admin_password=new_password(),
            ))
        user_list = list(users)
        try:
            with ThreadPoolExecutor(max_workers=workers or min(count, 16)) as pool:
                for fut in [pool.submit(self._bring_up, h, user_list, password) for h in self.hosts]:
                    fut.result()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _bring_up(host: SandboxHost, users: list[str], password: str | None) -> None:
        """Create the namespace, accounts and sshd of one host."""
        host._boot()
        specs = [(host.admin_user, host.admin_password, "nopasswd", None)]
        specs += [(u, password if password is not None else new_password(), None, None) for u in users]
        host._add_users(specs)
        host.start()

    def __enter__(self) -> "SandboxFleet":
        """Return self (hosts are already started)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the fleet."""
        self.close()

    def __iter__(self) -> Iterator[SandboxHost]:
        """Iterate over hosts."""
        return iter(self.hosts)

    def __len__(self) -> int:
        """Number of hosts."""
        return len(self.hosts)

    def __getitem__(self, index: int) -> SandboxHost:
        """Host by position."""
        return self.hosts[index]

    def host(self, name: str) -> SandboxHost:
        """Host by name ("h1", ...)."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def closed(self) -> bool:
        """Whether close() has run."""
        return self._closed

    def close(self) -> None:
        """Kill every sshd and namespace process, drop the mounts, remove temp dirs (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        errors: list[BaseException] = []
        for host in self.hosts:
            try:
                host._shutdown()
            except BaseException as exc:  # keep cleaning the other hosts
                errors.append(exc)
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        if errors:
            raise errors[0]
