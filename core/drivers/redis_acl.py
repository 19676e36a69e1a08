"""The `redis` platform: ACL users, changed with `ACL SETUSER name resetpass #<sha256>`.

Redis stores ACL passwords as SHA-256 hashes and accepts the hash itself (`#<hex>`), so the plaintext is
never sent: MONITOR and the slow log show only the hash. `resetpass` drops every other password (and
`nopass`), so afterwards exactly the vault's secret works. A user that does not exist is reported, never
created (SETUSER would create it).

The change must survive a restart. With an ACL file (`aclfile` in the config) keyturn runs `ACL SAVE`; with
users in redis.conf instead it runs `CONFIG REWRITE`. A server with neither (started with command-line options
only) would forget the change at its next restart and bring the old password back, so it is refused up front.

The `default` user is the one `requirepass` sets: changing it is `ACL SETUSER default resetpass #...` like any
other user (requirepass is only an alias of default's password since Redis 6), and clients that AUTH with the
password alone authenticate as `default`. It is a well-known admin name: secure mode leaves it alone unless the
configuration turns secure mode off.

Redis has no server-side statement timeout; ACL SETUSER is a constant-time command the single-threaded server
runs when it reads it, so a change cut off by a socket timeout is reported ambiguous and in flight.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from core.drivers.base import AMBIGUOUS, APPLIED, NOT_APPLIED, OK, REJECTED, UNKNOWN, DriverError, PushResult, Verify
from core.drivers.dbconn import TRUST_REASON, Conn, check_db_username, clean_error, seconds_until, wrong_password


def _client(conn: Conn, user: str, password: str) -> redis.Redis:
    kw: dict[str, Any] = {
        "host": conn.host, "port": conn.port, "username": user, "password": password,
        "db": int(conn.database or 0), "socket_connect_timeout": conn.connect_timeout,
        "socket_timeout": conn.command_timeout, "retry": None,
    }
    if conn.tls != "disable":
        kw.update(ssl=True, ssl_ca_certs=conn.ca_file or None,
                  ssl_cert_reqs="required" if conn.tls == "verify-full" else "none",
                  ssl_check_hostname=conn.tls == "verify-full")
        if conn.tls == "verify-full" and conn.tunneled is not None and conn.server_name:
            kw.pop("ssl")
            return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=_NamedSSLConnection,
                                                                    server_name=conn.server_name, **kw))
    return redis.Redis(**kw)


class _NamedSSLConnection(redis.SSLConnection):
    """A TLS connection that checks the certificate against the asset's address, not the host it reached.

    redis-py checks the certificate against the host it connected to; through a gateway that is the tunnel's
    127.0.0.1, so a tunneled verify-full connection names the asset's own address during the handshake.
    """

    def __init__(self, *, server_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_name = server_name

    def _wrap_socket_with_ssl(self, sock):  # type: ignore[no-untyped-def]
        reached = self.host
        self.host = self.server_name  # one connection is used by one thread at a time
        try:
            return super()._wrap_socket_with_ssl(sock)
        finally:
            self.host = reached


def _try_login(conn: Conn, username: str, password: str) -> Verify:
    client = _client(conn, username, password)
    try:
        client.ping()
        return OK
    except redis.AuthenticationError:
        return REJECTED
    except redis.exceptions.NoPermissionError:
        return OK  # AUTH passed (it runs on connect); the user is just not allowed PING
    except redis.RedisError as exc:
        return UNKNOWN(clean_error(exc, [password]))
    finally:
        client.close()


def login(conn: Conn, username: str, password: str) -> Verify:
    """AUTH as username; OK only when the server also refuses a deliberately wrong password (no `nopass`)."""
    first = _try_login(conn, username, password)
    if not first.ok:
        return first
    probe = _try_login(conn, username, wrong_password())
    if probe.ok:
        return UNKNOWN(TRUST_REASON)
    if not probe.rejected:
        return UNKNOWN(f"could not check that the server refuses a wrong password: {probe.reason}")
    return OK


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


class RedisDriver:
    """One connection as a user allowed the ACL and CONFIG commands."""

    def __init__(self, conn: Conn, login_user: str, password: str, *, params: object = None) -> None:
        check_db_username(login_user)
        self.conn = conn
        self.client = _client(conn, login_user, password)
        try:
            self.client.ping()
            self.aclfile = _text(self.client.config_get("aclfile").get("aclfile", ""))
            self.config_file = _text(self.client.info("server").get("config_file", ""))
        except redis.RedisError as exc:
            self.client.close()
            raise DriverError(f"cannot use Redis as {login_user}: {clean_error(exc, [password])}") from None

    def alive(self) -> bool:
        """Always true: redis-py reconnects (and authenticates again) on the next command by itself."""
        return True

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """ACL SETUSER username resetpass #<sha256>, then save the ACL where the server keeps it."""
        check_db_username(username)
        if seconds_until(deadline, self.conn.command_timeout, self.conn.margin) < 1:
            return PushResult(NOT_APPLIED, "too close to the record's deadline to start the change")
        if not self.aclfile and not self.config_file:
            return PushResult(NOT_APPLIED, "the server has neither an ACL file nor a config file: a changed password "
                                           "would be lost at its next restart")
        try:
            if self.client.execute_command("ACL", "GETUSER", username) is None:
                return PushResult(NOT_APPLIED, f"ACL user {username} does not exist")
        except redis.RedisError as exc:
            return PushResult(NOT_APPLIED, f"before the change: {clean_error(exc)}")
        digest = hashlib.sha256(new_password.encode()).hexdigest()
        try:
            self.client.execute_command("ACL", "SETUSER", username, "resetpass", f"#{digest}")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            return PushResult(AMBIGUOUS, f"connection lost during the change: {clean_error(exc, [digest])}",
                              in_flight=True)
        except redis.RedisError as exc:
            return PushResult(NOT_APPLIED, clean_error(exc, [digest]))
        try:
            if self.aclfile:
                self.client.execute_command("ACL", "SAVE")
            else:
                self.client.execute_command("CONFIG", "REWRITE")
        except redis.RedisError as exc:
            # Applied in memory but not saved: a login decides whether it took; a restart would undo it.
            return PushResult(AMBIGUOUS, f"changed but not saved ({'ACL SAVE' if self.aclfile else 'CONFIG REWRITE'}: "
                                         f"{clean_error(exc, [digest])}); a restart would bring the old password back")
        return PushResult(APPLIED)

    def install_key(self, username: str, public_line: str, strategy: str, *, deadline: float | None = None) -> PushResult:
        """Redis users have passwords only."""
        raise DriverError("redis users change passwords only, not SSH keys")

    def close(self) -> None:
        """Close the admin connection (and give back its gateway tunnel)."""
        try:
            self.client.close()
        finally:
            self.conn.release()
