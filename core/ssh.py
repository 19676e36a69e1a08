"""SSH over paramiko with pinned host keys only, and remote commands whose secrets travel on stdin.

Every failure is classified so the engine can apply DESIGN.md's state machine: an authentication that the
host rejected, a network problem or timeout, a host key that is missing or changed, and a command whose
outcome is unknown because the channel died after its input was sent.
"""

from __future__ import annotations

import io
import socket
from dataclasses import dataclass

import paramiko

from core import textsafe
from core.config import DEFAULT_DEADLINE_MARGIN, Settings
from storage.types import AssetInfo, fingerprint_sha256


class SSHError(Exception):
    """Base of every classified SSH failure; messages never carry a secret."""

    kind = "ssh"


class AuthRejected(SSHError):
    """The host answered and refused the credentials."""

    kind = "auth"


class AuthRefusedByPolicy(SSHError):
    """The host does not offer the authentication method (e.g. passwords disabled): nothing was tested."""

    kind = "policy"


class NetworkError(SSHError):
    """The host could not be reached, or the connection broke or timed out."""

    kind = "network"


class HostKeyError(SSHError):
    """No pinned host key, or the host presented a key that is not pinned."""

    kind = "hostkey"


class CommandNotStarted(SSHError):
    """The remote command never received its input: the host was not touched by it."""

    kind = "not-started"


class CommandLost(SSHError):
    """The input was sent but the outcome is unknown (channel closed or timed out)."""

    kind = "lost"


# Broken or weak algorithms paramiko still offers: never negotiated with a host (3DES's 64-bit blocks, MD5 and
# SHA-1 MACs). A host that offers nothing else fails to connect with a clear kex error instead.
LEGACY_ALGORITHMS: dict[str, list[str]] = {
    "ciphers": ["3des-cbc", "blowfish-cbc"],
    "macs": ["hmac-md5", "hmac-md5-96", "hmac-sha1", "hmac-sha1-96", "hmac-md5-etm@openssh.com",
             "hmac-md5-96-etm@openssh.com", "hmac-sha1-etm@openssh.com", "hmac-sha1-96-etm@openssh.com"],
}


@dataclass(frozen=True)
class Timeouts:
    """Connect, authentication and command timeouts in seconds, and the margin around a change's deadline."""

    connect: float = 10.0
    auth: float = 15.0
    command: float = 60.0
    margin: float = DEFAULT_DEADLINE_MARGIN  # the deadline_margin setting: see core.drivers.base.change_budget


    @classmethod
    def from_settings(cls, settings: Settings) -> "Timeouts":
        """The timeouts a configuration asks for."""
        return cls(settings.connect_timeout, settings.auth_timeout, settings.command_timeout, settings.deadline_margin)


def _known_names(asset: AssetInfo) -> list[str]:
    # paramiko looks a host up as "[address]:port" unless the port is 22, where it uses the bare address.
    return [asset.address] if asset.port == 22 else [f"[{asset.address}]:{asset.port}", asset.address]


def _pinned_fingerprints(asset: AssetInfo) -> str:
    return ", ".join(f"{k.key_type} {k.fingerprint}" for k in asset.host_keys)


class _PinnedOnly(paramiko.MissingHostKeyPolicy):
    """Refuse any key not pinned on the asset, naming both the pinned and the presented fingerprint."""

    def __init__(self, asset: AssetInfo) -> None:
        self.asset = asset

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(_mismatch_text(self.asset, key))


def _mismatch_text(asset: AssetInfo, key: paramiko.PKey) -> str:
    presented = f"{key.get_name()} {fingerprint_sha256(key.get_base64())}"
    return (f"host key changed for {asset.name} ({asset.address}:{asset.port}): pinned {_pinned_fingerprints(asset)}, "
            f"host presented {presented}; if the change is expected, run keyturn asset trust {asset.name}")


def _client_for(asset: AssetInfo) -> paramiko.SSHClient:
    if not asset.host_keys:
        raise HostKeyError(f"{asset.name}: no pinned host key; run keyturn asset trust {asset.name}")
    client = paramiko.SSHClient()
    keys = client.get_host_keys()
    for hk in asset.host_keys:
        try:
            pkey = paramiko.PKey.from_type_string(hk.key_type, __import__("base64").b64decode(hk.key_base64))
        except Exception:  # noqa: BLE001 - an unreadable pinned key is skipped; another may still match
            continue
        for name in _known_names(asset):
            keys.add(name, hk.key_type, pkey)
    client.set_missing_host_key_policy(_PinnedOnly(asset))
    return client


def load_pkey(private_text: str, passphrase: str | None) -> paramiko.PKey:
    """A paramiko key from OpenSSH/PEM text; ValueError (without the key text) when it cannot be read."""
    data = private_text.strip() + "\n"
    last: Exception | None = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(data), password=passphrase or None)
        except paramiko.PasswordRequiredException:
            raise ValueError("the private key is encrypted and no passphrase is stored") from None
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            last = exc
    raise ValueError(f"the private key cannot be read ({type(last).__name__})")


def connect(asset: AssetInfo, username: str, *, password: str | None = None, pkey_text: str | None = None,
            passphrase: str | None = None, timeouts: Timeouts = Timeouts()) -> paramiko.SSHClient:
    """Log in to asset as username with a password or a private key, trusting only its pinned host keys."""
    client = _client_for(asset)
    pkey = None
    if pkey_text is not None:
        try:
            pkey = load_pkey(pkey_text, passphrase)
        except ValueError as exc:
            raise AuthRejected(f"{asset.name}: {username}: {exc}") from None
    where = f"{asset.name} ({asset.address}:{asset.port})"
    try:
        client.connect(
            asset.address, asset.port, username=username, password=password if pkey is None else None, pkey=pkey,
            look_for_keys=False, allow_agent=False, timeout=timeouts.connect, banner_timeout=timeouts.connect,
            auth_timeout=timeouts.auth, channel_timeout=timeouts.command, disabled_algorithms=LEGACY_ALGORITHMS,
        )
        return client
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(_mismatch_text(asset, exc.key)) from None
    except paramiko.BadAuthenticationType as exc:
        client.close()
        allowed = ", ".join(exc.allowed_types) or "none"
        raise AuthRefusedByPolicy(f"{where}: login as {username} refused by policy (host allows: {allowed})") from None
    except paramiko.AuthenticationException:
        # paramiko also says "Authentication failed" when the connection drops mid-login (EOF): only a host
        # still talking to us has really refused the secret.
        transport = client.get_transport()
        dropped = transport is None or not transport.is_active()
        client.close()
        if dropped:
            raise NetworkError(f"{where}: the connection dropped during the login as {username}") from None
        raise AuthRejected(f"{where}: login as {username} rejected") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise NetworkError(f"{where}: timed out") from None
    except paramiko.SSHException as exc:
        client.close()
        # paramiko messages name the protocol step only (banner, kex), never credentials.
        raise NetworkError(textsafe.clean_line(f"{where}: SSH error: {exc}")) from None
    except (OSError, EOFError) as exc:
        client.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise NetworkError(f"{where}: {reason}") from None


def run(client: paramiko.SSHClient, argv_or_script: str | list[str], stdin_data: str | None,
        timeout: float) -> tuple[int, str, str]:
    """Run a command (a script string, or argv that is shell-quoted) with stdin_data; (exit, stdout, stderr).

    The command line must hold no secret: secrets go in stdin_data only. CommandNotStarted means the input
    never left; CommandLost means it was (maybe partly) sent and the outcome is unknown.
    """
    import shlex

    command = argv_or_script if isinstance(argv_or_script, str) else shlex.join(argv_or_script)
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise CommandNotStarted("the connection is closed")
    try:
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(command)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise CommandNotStarted(f"could not start the remote command: {type(exc).__name__}") from None
    sent = False
    try:
        try:
            if stdin_data:
                sent = True
                chan.sendall(stdin_data.encode())
            chan.shutdown_write()
            sent = True
        except (paramiko.SSHException, OSError, EOFError):
            # A command may end without reading its input (sudo refusing at once, `sudo -v` needing no
            # password): the channel closes under our write. Its exit status still tells what happened.
            if not chan.status_event.wait(min(timeout, 10.0)):
                raise
        out = _read_all(chan.recv)
        err = _read_all(chan.recv_stderr)
        if not chan.status_event.wait(timeout):
            raise socket.timeout()
        code = chan.recv_exit_status()
    except (socket.timeout, TimeoutError):
        chan.close()
        raise (CommandLost if sent else CommandNotStarted)(f"the remote command timed out after {timeout:.0f}s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        chan.close()
        raise (CommandLost if sent else CommandNotStarted)(f"the connection broke during the command: {type(exc).__name__}") from None
    chan.close()
    if code == -1:
        # The channel closed without an exit status: sshd or the session died mid-command.
        raise CommandLost("the remote command ended without an exit status")
    # Host output comes from outside: no escape sequence of a host reaches a record, a log or a terminal.
    return code, textsafe.clean(out.decode(errors="replace")), textsafe.clean(err.decode(errors="replace"))


def _read_all(recv) -> bytes:  # type: ignore[no-untyped-def]
    chunks: list[bytes] = []
    while True:
        data = recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def scrub(text: str, secrets: list[str | None]) -> str:
    """Text with every occurrence of each secret (and its lines of a multi-line key) replaced by <secret>."""
    for secret in secrets:
        if not secret:
            continue
        pieces = [secret] + ([ln for ln in secret.splitlines() if len(ln.strip()) >= 8] if "\n" in secret else [])
        for piece in pieces:
            if piece and piece in text:
                text = text.replace(piece, "<secret>")
    return text


__all__ = [
    "SSHError", "AuthRejected", "AuthRefusedByPolicy", "NetworkError", "HostKeyError", "CommandNotStarted",
    "CommandLost", "Timeouts", "connect", "run", "scrub", "load_pkey",
]
