"""What the database platforms share: connection options, user-name checks, and a login that cannot be fooled.

An asset of platform postgresql, mysql, mariadb or redis is reached with the database's own protocol (no
SSH, no pinned host key). Its privileged account is the admin login used to make the change; the accounts
keyturn changes are database roles / users. Connection options live on the asset: port (defaults below),
database name, TLS mode (disable | require | verify-full) with an optional CA file, and connect/command
timeouts that override the configuration's.

A login decides every change, and a server that lets anyone in (PostgreSQL `trust`, a Redis `nopass` user,
MariaDB started with --skip-grant-tables) would make any login look like proof. So a successful login is
only OK once the server has shown it checks passwords: for PostgreSQL, libpq tells whether the server asked
for the password at all; for MySQL/MariaDB and Redis a deliberate login with a wrong password must be refused.
Otherwise the answer is UNKNOWN with that reason, and the record stays `unverified`.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
from dataclasses import dataclass

from core.drivers.base import DEADLINE_MARGIN, UNKNOWN, DriverError, Verify
from core.errors import InputError
from core.ssh import Timeouts
from core.textsafe import clean_line
from storage.types import AssetInfo
from core.values import (  # defined there so that front ends can read them without loading the drivers
    DB_PLATFORMS as DB_PLATFORMS, DEFAULT_PORTS as DEFAULT_PORTS, REJECTED_PLATFORMS as REJECTED_PLATFORMS,
    TLS_MODES as TLS_MODES, is_database as is_database,
)

# The built-in administrators of each platform: secure mode leaves them alone like privileged accounts.
WELL_KNOWN_ADMINS = {"postgresql": ("postgres",), "mysql": ("root",), "mariadb": ("root",), "redis": ("default",)}

TRUST_REASON = ("the server accepted a deliberately wrong password too (trust authentication or a password-less "
                "user): a login proves nothing here")

# Role and user names: no quoting tricks, no whitespace; the drivers still quote them as identifiers.
_DB_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@$-]{0,62}$")
# MySQL account host part: a host name, an IP address, or a LIKE pattern of one ('%', '10.0.%').
_ACCOUNT_HOST = re.compile(r"^[A-Za-z0-9_.%:/-]{1,255}$")


def check_db_username(username: str) -> None:
    """Raise DriverError unless username is a plain database role / user name."""
    if not _DB_USERNAME.match(username or ""):
        raise DriverError(f"invalid database user name {username!r}: letters, digits and _ . @ $ - only, "
                          "at most 63 characters")


def check_account_host(host: str) -> None:
    """Raise DriverError unless host is a MySQL account host ('%', a name, an address or a pattern)."""
    if not _ACCOUNT_HOST.match(host or ""):
        raise DriverError(f"account_host: {host!r} is not a MySQL host ('%', a host name, an address or a pattern)", field="account_host")


def check_options(platform: str, *, port: int | None = None, database: str = "", tls: str = "", ca_file: str = "",
                  connect_timeout: float | None = None, command_timeout: float | None = None,
                  gateway: str | None = None) -> dict[str, object]:
    """The asset's connection options, checked: InputError naming the field. Returns the columns to store."""
    if platform in REJECTED_PLATFORMS:
        raise InputError(f"platform: {REJECTED_PLATFORMS[platform]}", field="platform")
    if not is_database(platform):
        for name, value in (("database", database), ("tls", tls), ("ca_file", ca_file),
                            ("connect_timeout", connect_timeout), ("command_timeout", command_timeout),
                            ("gateway", gateway)):
            if value:
                raise InputError(f"{name}: applies to database assets only (postgresql, mysql, mariadb, redis)", field=name)
        return {}
    if database and (len(database) > 63 or any(ord(c) < 32 for c in database)):
        raise InputError("database: at most 63 characters, no control characters", field="database")
    if platform == "redis" and database and not database.isdigit():
        raise InputError("database: a Redis database is a number (0-15 by default)", field="database")
    if tls and tls not in TLS_MODES:
        raise InputError(f"tls: must be one of {', '.join(TLS_MODES)}, got {tls!r}", field="tls")
    if ca_file:
        if not os.path.isabs(ca_file):
            raise InputError(f"ca_file: give an absolute path, got {ca_file!r}", field="ca_file")
        if tls in ("", "disable"):
            raise InputError("ca_file: needs --tls require or verify-full", field="ca_file")
    for name, value in (("connect_timeout", connect_timeout), ("command_timeout", command_timeout)):
        if value is not None and not (0.1 <= float(value) <= 3600):
            raise InputError(f"{name}: must be from 0.1 to 3600 seconds, got {value!r}", field=name)
    out: dict[str, object] = {"database": database, "tls": tls, "ca_file": ca_file,
                              "connect_timeout": connect_timeout, "command_timeout": command_timeout}
    if gateway is not None:
        out["gateway"] = gateway  # a name; storage resolves it (an unknown name is an error there)
    return out


def default_port(platform: str) -> int:
    """The port an asset of platform listens on unless told otherwise (22 for SSH platforms)."""
    return DEFAULT_PORTS.get(platform, 22)


def describe_options(asset: AssetInfo) -> list[tuple[str, str]]:
    """(label, value) of a database asset's connection options, for `asset show` and the app (none for hosts)."""
    if not is_database(asset.platform):
        return []
    out = [("database", asset.database or "(default)"), ("tls", asset.tls or "disable")]
    if asset.ca_file:
        out.append(("ca file", asset.ca_file))
    if asset.gateway_id is not None:
        out.append(("gateway", asset.gateway or "(removed)"))
    for label, value in (("connect timeout", asset.connect_timeout), ("command timeout", asset.command_timeout)):
        if value is not None:
            out.append((label, f"{value:g}s"))
    return out


@dataclass(frozen=True)
class Conn:
    """How to reach one database asset, with the asset's options over the configured timeouts."""

    platform: str
    host: str
    port: int
    database: str
    tls: str
    ca_file: str
    connect_timeout: float
    command_timeout: float
    tunneled: AssetInfo | None = None  # the asset whose gateway tunnel this connection uses (released on close)
    # The asset's own address: the name `verify-full` checks the server's certificate against. Through a gateway
    # `host` is the tunnel's 127.0.0.1, which the database's certificate does not (and should not) name.
    server_name: str = ""
    margin: float = DEADLINE_MARGIN  # Timeouts.margin: the server stops a change this long before its deadline

    def release(self) -> None:
        """Give back the gateway tunnel this connection used, if any."""
        if self.tunneled is not None:
            from core.drivers.gateway import release

            release(self.tunneled)

    @classmethod
    def of(cls, asset: AssetInfo, timeouts: Timeouts) -> "Conn":
        """The connection settings of asset."""
        from core.drivers.gateway import endpoint

        host, port = endpoint(asset)  # through the gateway's tunnel when the asset has one (DriverError if closed)
        return cls(asset.platform, host, port or DEFAULT_PORTS[asset.platform], asset.database,
                   asset.tls or "disable", asset.ca_file, asset.connect_timeout or timeouts.connect,
                   asset.command_timeout or timeouts.command, asset if asset.gateway_id is not None else None,
                   asset.address, timeouts.margin)


def seconds_until(deadline: float | None, default: float, margin: float) -> float:
    """Seconds the server may spend on a change that must end margin seconds before deadline (0: too late to start)."""
    if deadline is None:
        return default
    return max(0.0, math.floor(deadline - time.time() - margin))


def wrong_password() -> str:
    """A password no account can have: the probe of a server that might accept anything."""
    return "keyturn-wrong-" + secrets.token_hex(16)


def clean_error(exc: BaseException, secrets_: list[str | None] = ()) -> str:  # type: ignore[assignment]
    """A database error as one safe line: control characters out, any secret replaced, bounded length."""
    from core.ssh import scrub

    text = str(exc).strip() or type(exc).__name__
    return clean_line(scrub(text, list(secrets_)))[:300]


def verify_db_password(asset: AssetInfo, username: str, password: str, timeouts: Timeouts) -> Verify:
    """Log in to the database as username with password: OK, REJECTED, or UNKNOWN(reason)."""
    try:
        conn = Conn.of(asset, timeouts)
    except DriverError as exc:
        return UNKNOWN(str(exc))
    if conn.platform == "postgresql":
        from core.drivers.postgresql import login
    elif conn.platform == "redis":
        from core.drivers.redis_acl import login
    else:
        from core.drivers.mysql import login
    return login(conn, username, password)


def open_db_driver(asset: AssetInfo, login_user: str, *, password: str | None, pkey_text: str | None = None,
                   params: object = None, timeouts: Timeouts = Timeouts()) -> object:
    """Connect with the asset's admin account and return its driver (raises DriverError, never with a secret)."""
    if pkey_text or not password:
        raise DriverError("a database admin account logs in with a password: the privileged account has none")
    conn = Conn.of(asset, timeouts)
    if conn.platform == "postgresql":
        from core.drivers.postgresql import PostgresDriver as cls
    elif conn.platform == "redis":
        from core.drivers.redis_acl import RedisDriver as cls  # type: ignore[assignment]
    else:
        from core.drivers.mysql import MySQLDriver as cls  # type: ignore[assignment]
    return cls(conn, login_user, password, params=params)
