"""SSH tunnels to databases only the jump network can reach, through a gateway asset keyturn already trusts.

A database asset may name a gateway: a linux/unix/aix asset with a pinned host key and a privileged account.
keyturn logs in there (pinned key, as for any host) and forwards one local loopback port to the database's
address and port through the SSH connection (`direct-tcpip`, what `ssh -L` does). The database drivers and
the verification logins then connect to that local port; TLS and authentication run end to end with the
database as before.

Tunnels are shared and counted: the engine opens one with an asset's admin connection and closes it with
that connection, and the verification logins of the same run go through it. A caller that holds no tunnel
(reconcile) opens one around its logins with `opened()`. A login through a gateway without an open tunnel
answers UNKNOWN (never a false REJECTED).

The local port listens on 127.0.0.1 only and lives as long as the run needs it; the database still asks
every connection for its password.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import paramiko

from core import ssh
from core.drivers.base import DriverError
from core.ssh import Timeouts
from storage.types import AssetInfo

SSH_GATEWAY_PLATFORMS = ("linux", "unix", "aix")


@dataclass
class Tunnel:
    """One SSH connection to a gateway forwarding a local port to (host, port)."""

    client: paramiko.SSHClient
    target: tuple[str, int]
    listener: socket.socket
    users: int = 1
    threads: list[threading.Thread] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def local_port(self) -> int:
        """The loopback port that reaches the database."""
        return int(self.listener.getsockname()[1])

    def serve(self) -> None:
        """Accept local connections and pipe each through its own SSH channel until closed."""
        while not self.closed.is_set():
            try:
                local, _ = self.listener.accept()
            except OSError:
                return
            transport = self.client.get_transport()
            try:
                if transport is None or not transport.is_active():
                    raise paramiko.SSHException("the gateway connection is closed")
                chan = transport.open_channel("direct-tcpip", self.target, local.getpeername())
            except (paramiko.SSHException, OSError, EOFError):
                # EOFError: the gateway's connection dropped while the channel opened (paramiko re-raises what
                # ended its transport thread); that local connection is refused, the next one sees it closed.
                local.close()
                continue
            t = threading.Thread(target=_pipe, args=(local, chan, self.closed), daemon=True, name="keyturn-tunnel")
            t.start()
            self.threads.append(t)

    def close(self) -> None:
        """Stop listening and close the SSH connection (open pipes end with it)."""
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.client.close()


def _pipe(local: socket.socket, chan: paramiko.Channel, closed: threading.Event) -> None:
    try:
        while not closed.is_set():
            ready, _, _ = select.select([local, chan], [], [], 1.0)
            if local in ready:
                data = local.recv(65536)
                if not data:
                    break
                chan.sendall(data)
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    break
                local.sendall(data)
    except (OSError, paramiko.SSHException, EOFError):
        pass  # EOFError: paramiko's write to a gateway connection that has just dropped
    finally:
        chan.close()
        local.close()


_tunnels: dict[tuple[int, str, int], Tunnel] = {}
_lock = threading.Lock()


def _key(asset: AssetInfo) -> tuple[int, str, int]:
    assert asset.gateway_id is not None
    return (asset.gateway_id, asset.address, asset.port)


def endpoint(asset: AssetInfo) -> tuple[str, int]:
    """Where to connect for asset: its own address, or the local end of its open tunnel (else DriverError)."""
    if asset.gateway_id is None:
        return asset.address, asset.port
    with _lock:
        tunnel = _tunnels.get(_key(asset))
    if tunnel is None or tunnel.closed.is_set():
        raise DriverError(f"{asset.name}: no tunnel is open through gateway {asset.gateway or asset.gateway_id}")
    return "127.0.0.1", tunnel.local_port


def acquire(db: object, asset: AssetInfo, timeouts: Timeouts) -> bool:
    """Open (or share) the tunnel of asset; False when it has no gateway. Raises DriverError or ssh.SSHError."""
    if asset.gateway_id is None:
        return False
    key = _key(asset)
    with _lock:
        tunnel = _tunnels.get(key)
        if tunnel is not None and not tunnel.closed.is_set():
            tunnel.users += 1
            return True
    tunnel = _open(db, asset, timeouts)
    with _lock:
        other = _tunnels.get(key)
        if other is not None and not other.closed.is_set():  # opened meanwhile by another thread: share that one
            other.users += 1
            tunnel.close()
            return True
        _tunnels[key] = tunnel
    return True


def release(asset: AssetInfo) -> None:
    """Give back one use of asset's tunnel; the last one closes it."""
    if asset.gateway_id is None:
        return
    with _lock:
        tunnel = _tunnels.get(_key(asset))
        if tunnel is None:
            return
        tunnel.users -= 1
        if tunnel.users > 0:
            return
        del _tunnels[_key(asset)]
    tunnel.close()


@contextlib.contextmanager
def opened(db: object, asset: AssetInfo, timeouts: Timeouts) -> Iterator[None]:
    """The asset's tunnel open for the block (nothing for an asset without gateway); errors surface as logins
    answering UNKNOWN, since a probe must not fail louder than an unreachable server."""
    try:
        held = acquire(db, asset, timeouts)
    except (DriverError, ssh.SSHError):
        held = False
    try:
        yield
    finally:
        if held:
            release(asset)


def _open(db: object, asset: AssetInfo, timeouts: Timeouts) -> Tunnel:
    from storage.inventory import NotFound, account_secrets, get_asset_by_id, privileged_account

    assert asset.gateway_id is not None
    try:
        gw = get_asset_by_id(db, asset.gateway_id)  # type: ignore[arg-type]
    except NotFound:
        raise DriverError(f"{asset.name}: its gateway asset was removed") from None
    if gw.platform not in SSH_GATEWAY_PLATFORMS:
        raise DriverError(f"{asset.name}: gateway {gw.name} is a {gw.platform} asset; a gateway must be "
                          f"{', '.join(SSH_GATEWAY_PLATFORMS)}")
    priv = privileged_account(db, gw.id)  # type: ignore[arg-type]
    if priv is None:
        raise DriverError(f"{asset.name}: gateway {gw.name} has no privileged account to log in with")
    creds = account_secrets(db, priv.id)  # type: ignore[arg-type]
    client = ssh.connect(gw, priv.username, password=creds.secret if priv.secret_type == "password" else None,
                         pkey_text=creds.secret if priv.secret_type == "ssh_key" else None,
                         passphrase=creds.passphrase, timeouts=timeouts)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    tunnel = Tunnel(client, (asset.address, asset.port), listener)
    threading.Thread(target=tunnel.serve, daemon=True, name=f"keyturn-gateway-{gw.name}").start()
    return tunnel
