"""What every host driver offers the engine: push a secret over one privileged connection, and verify logins.

A push answers applied, not applied (the host is certainly unchanged) or ambiguous (it may or may not have
changed: the engine must probe). A verification answers OK, REJECTED, or UNKNOWN with a reason; only a
login the host really refused is REJECTED, so a timeout or a policy refusal never looks like a wrong secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from core import ssh
from core.config import DEFAULT_DEADLINE_MARGIN
from core.names import USERNAME_RULE, is_username
from core.ssh import Timeouts
from storage.types import AssetInfo, HostParams

APPLIED = "applied"
NOT_APPLIED = "not_applied"
AMBIGUOUS = "ambiguous"

KEY_STRATEGIES = ("replace-ours", "replace-all", "append")

# Slack between the deadline a host enforces on a change and the deadline its record stores, for network
# latency and the start of the remote command (DESIGN.md point 5): the default of the deadline_margin setting,
# which the drivers read from Timeouts.margin.
DEADLINE_MARGIN = DEFAULT_DEADLINE_MARGIN


def change_budget(timeouts: Timeouts) -> float:
    """Seconds from committing `pushing` until the host has certainly stopped the change.

    The host kills the change after about command timeout + margin; the record's deadline adds one more
    margin, so when a reconcile sees the deadline passed, nothing of that push can still land.
    """
    return timeouts.command + 2 * timeouts.margin


def seconds_left(deadline: float | None, timeouts: Timeouts) -> int:
    """Whole seconds the host may give a change that must end a margin before deadline (epoch seconds).

    Without a deadline: command timeout + margin. 0 means the deadline is too close to start the change.
    """
    import math
    import time

    if deadline is None:
        return math.ceil(timeouts.command + timeouts.margin)
    return max(0, math.floor(deadline - time.time() - timeouts.margin))

_PUBLIC_LINE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}( [^\r\n\x00]*)?$")


class DriverError(Exception):
    """The driver cannot work on this asset (unsupported platform, bad parameters); field names a bad parameter."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_username(username: str) -> None:
    """Raise DriverError unless username is safe to put (quoted) in a remote command (core.names' rule)."""
    if not is_username(username):
        raise DriverError(f"invalid user name {username!r}: {USERNAME_RULE}")


def check_public_line(line: str) -> None:
    """Raise DriverError unless line is one OpenSSH public key line."""
    if not _PUBLIC_LINE.match(line or ""):
        raise DriverError("the public key is not a single OpenSSH public key line")


@dataclass(frozen=True)
class PushResult:
    """Outcome of pushing one secret: applied, not_applied (host unchanged) or ambiguous (probe it)."""

    state: str
    error: str = ""
    # The command's end was never seen (connection lost, timeout): it may still change the host later.
    in_flight: bool = False

    @property
    def applied(self) -> bool:
        """Whether the host reported the change done."""
        return self.state == APPLIED


@dataclass(frozen=True)
class Verify:
    """Outcome of a login attempt: status OK, REJECTED or UNKNOWN (with the reason)."""

    status: str
    reason: str = ""

    OK_STATUS = "ok"
    REJECTED_STATUS = "rejected"
    UNKNOWN_STATUS = "unknown"

    @property
    def ok(self) -> bool:
        """The host accepted the secret."""
        return self.status == self.OK_STATUS

    @property
    def rejected(self) -> bool:
        """The host answered and refused the secret."""
        return self.status == self.REJECTED_STATUS


OK = Verify(Verify.OK_STATUS)
REJECTED = Verify(Verify.REJECTED_STATUS)


def UNKNOWN(reason: str) -> Verify:  # noqa: N802 - reads like the OK / REJECTED constants
    """A login whose outcome could not be learned (network, timeout, refused by policy)."""
    return Verify(Verify.UNKNOWN_STATUS, reason)


class HostDriver(Protocol):
    """One privileged connection to an asset, reused for all its accounts.

    deadline (epoch seconds): the host itself must have stopped the change by then, whatever happens to
    the connection; a driver that cannot start it early enough returns NOT_APPLIED.
    """

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """Set username's password on the host (the password travels on stdin)."""

    def install_key(self, username: str, public_line: str, strategy: str, *,
                    deadline: float | None = None) -> PushResult:
        """Put public_line into username's authorized_keys following strategy, atomically."""

    def close(self) -> None:
        """Close the connection."""


def _login(asset: AssetInfo, username: str, timeouts: Timeouts, **creds: str | None) -> Verify:
    try:
        ssh.connect(asset, username, timeouts=timeouts, **creds).close()  # type: ignore[arg-type]
        return OK
    except ssh.AuthRejected:
        return REJECTED
    except ssh.SSHError as exc:
        return UNKNOWN(str(exc))


def verify_password(asset: AssetInfo, username: str, password: str | None, timeouts: Timeouts = Timeouts()) -> Verify:
    """Log in as username with password: OK, REJECTED, or UNKNOWN(reason).

    Database assets log in with their own protocol (core/drivers/dbconn.py), other platforms over SSH.
    """
    if not password:
        return UNKNOWN("no password known for this account")
    from core.drivers.dbconn import is_database, verify_db_password

    if is_database(asset.platform):
        return verify_db_password(asset, username, password, timeouts)
    return _login(asset, username, timeouts, password=password)


def verify_key(asset: AssetInfo, username: str, private_text: str | None, passphrase: str | None,
               timeouts: Timeouts = Timeouts()) -> Verify:
    """Log in as username with a private key: OK, REJECTED, or UNKNOWN(reason)."""
    if not private_text:
        return UNKNOWN("no private key known for this account")
    from core.drivers.dbconn import is_database

    if is_database(asset.platform):
        return UNKNOWN(f"{asset.platform} accounts log in with passwords, not SSH keys")
    try:
        ssh.load_pkey(private_text, passphrase)
    except ValueError as exc:
        return UNKNOWN(str(exc))
    return _login(asset, username, timeouts, pkey_text=private_text, passphrase=passphrase)


def driver_class(platform: str) -> type:
    """The SSH driver class of a platform, or DriverError (databases: core.drivers.dbconn.open_db_driver)."""
    from core.drivers.aix import AixDriver
    from core.drivers.custom_ssh import CustomSSHDriver
    from core.drivers.posix import PosixDriver

    drivers: dict[str, type] = {"linux": PosixDriver, "unix": PosixDriver, "aix": AixDriver, "custom-ssh": CustomSSHDriver}
    try:
        return drivers[platform]
    except KeyError:
        raise DriverError(f"platform {platform!r} is not supported for secret changes yet") from None


def open_driver(asset: AssetInfo, login_user: str, *, password: str | None = None, pkey_text: str | None = None,
                passphrase: str | None = None, become: str | None = None, params: HostParams = HostParams(),
                timeouts: Timeouts = Timeouts()) -> HostDriver:
    """Connect with the privileged account and return the platform's driver (raises ssh.SSHError, DriverError).

    become is the sudo password when one is configured; without it, a sudo that asks for a password gets the
    login password (sudo's default is the user's own).
    """
    from core.drivers.dbconn import is_database, open_db_driver

    if is_database(asset.platform):
        return open_db_driver(asset, login_user, password=password, pkey_text=pkey_text, params=params,  # type: ignore[return-value]
                              timeouts=timeouts)
    cls = driver_class(asset.platform)
    check_username(login_user)
    client = ssh.connect(asset, login_user, password=password, pkey_text=pkey_text, passphrase=passphrase,
                         timeouts=timeouts)
    return cls(client, login_user=login_user, params=params, become=become, timeouts=timeouts, login_password=password)
