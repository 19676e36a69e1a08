"""The `mysql` and `mariadb` platforms: `ALTER USER 'user'@'host'` with a hash computed on the client.

Which entries change: the task parameter `account_host` (default `%`) names one 'user'@'host' entry;
`all_hosts=true` changes every entry of the user name, in one ALTER USER statement.

The plaintext stays out of the server's general and slow logs wherever the account's auth plugin lets the
client send the stored form instead (read from mysql.user before the change):
- `mysql_native_password` (MariaDB's and MySQL 5.x's default): the stored form is '*' + SHA1(SHA1(password)),
  sent as `IDENTIFIED BY PASSWORD '*...'` (MariaDB) or `IDENTIFIED WITH mysql_native_password AS '*...'` (MySQL).
- MariaDB `ed25519`: the stored form is the Ed25519 public key of the scalar derived from SHA-512(password),
  computed here with libsodium and sent as `IDENTIFIED VIA ed25519 USING '<base64>'`.
- Every other plugin (MySQL 8's `caching_sha2_password`, `sha256_password`): its stored form is salted and
  server-specific, so the plaintext is sent as `IDENTIFIED BY '...'`. MySQL itself rewrites such statements
  in its general, slow and binary logs (password rewriting), but the plaintext does cross the wire: use TLS.

PyMySQL (pure Python, no libmysqlclient to build) sends the statement with the values escaped on the client.
The change runs under `lock_wait_timeout` (both servers) and MariaDB's `max_statement_time`, set from the
record's deadline, so the server gives up before reconcile may judge the record.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import threading
import time
from typing import Any

import pymysql

from core.drivers.base import AMBIGUOUS, APPLIED, NOT_APPLIED, OK, REJECTED, UNKNOWN, DriverError, PushResult, Verify
from core.drivers.dbconn import (
    TRUST_REASON, Conn, check_account_host, check_db_username, clean_error, seconds_until, wrong_password,
)
from storage.types import HostParams

ACCESS_DENIED = 1045
LOST = (2003, 2006, 2013, 2055)  # cannot connect / gone away / lost during query


class _NamedContext(ssl.SSLContext):
    """A TLS context that checks the certificate against one fixed name, whatever address the socket reached.

    PyMySQL checks the certificate against the host it connected to; through a gateway that is the tunnel's
    127.0.0.1, so a tunneled verify-full connection wraps its socket with the asset's own address instead.
    """

    server_name = ""

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):  # type: ignore[no-untyped-def,override]
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname, **kwargs)


def _ssl(conn: Conn) -> ssl.SSLContext | None:
    """The TLS context of conn's mode (None: disable), built once per mode, CA file and name, then shared.

    Building one reads the CA bundle (about 30 ms of CPU); a run logs in once per account, so a context is
    reused (SSLContext is safe to share between threads). A changed CA file (its mtime) builds a new one.
    """
    if conn.tls == "disable":
        return None
    named = conn.tls == "verify-full" and conn.tunneled is not None and bool(conn.server_name)
    try:
        stamp = os.stat(conn.ca_file).st_mtime_ns if conn.ca_file else 0
    except OSError:
        stamp = -1  # let the context's own load report the missing file
    key = (conn.tls, conn.ca_file, stamp, conn.server_name if named else "")
    with _ssl_lock:
        ctx = _ssl_contexts.get(key)
    if ctx is None:
        ctx = _new_ssl(conn, named)
        with _ssl_lock:
            if len(_ssl_contexts) > 64:
                _ssl_contexts.clear()
            _ssl_contexts[key] = ctx
    return ctx


_ssl_contexts: dict[tuple[str, str, int, str], ssl.SSLContext] = {}
_ssl_lock = threading.Lock()


def _new_ssl(conn: Conn, named: bool) -> ssl.SSLContext:
    if named:
        fixed = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # what create_default_context builds, checking server_name
        fixed.server_name = conn.server_name
        if conn.ca_file:
            fixed.load_verify_locations(cafile=conn.ca_file)
        else:
            fixed.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return fixed
    ctx = ssl.create_default_context(cafile=conn.ca_file or None)
    if conn.tls == "require":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # "require" encrypts without checking who answers, as libpq's sslmode
    return ctx


def _connect(conn: Conn, user: str, password: str, *, database: bool = True) -> pymysql.connections.Connection:
    kw: dict[str, Any] = {
        "host": conn.host, "port": conn.port, "user": user, "password": password, "autocommit": True,
        "connect_timeout": conn.connect_timeout, "read_timeout": conn.command_timeout,
        "write_timeout": conn.command_timeout, "charset": "utf8mb4",
    }
    if database and conn.database:
        kw["database"] = conn.database
    ctx = _ssl(conn)
    if ctx is not None:
        kw["ssl"] = ctx
    else:
        # Without this PyMySQL "prefers" TLS: it builds a default context on every connect (about 30 ms of
        # CPU reading the CA bundle) and negotiates TLS when the server offers it, which `disable` rules out.
        kw["ssl_disabled"] = True
    return pymysql.connect(**kw)


def _code(exc: BaseException) -> int:
    return int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0


def _try_login(conn: Conn, username: str, password: str) -> Verify:
    try:
        _connect(conn, username, password, database=False).close()
        return OK
    except pymysql.MySQLError as exc:
        if _code(exc) == ACCESS_DENIED:
            return REJECTED
        return UNKNOWN(clean_error(exc, [password]))


# Servers seen refusing a wrong password lately: (host, port) -> monotonic time until which that is trusted.
# A MySQL/MariaDB server that accepts any password does so for everyone (--skip-grant-tables), so one refused
# probe per server every PROBE_TTL seconds covers its accounts; a server that let the probe in is never cached.
PROBE_TTL = 300.0
_refuses_wrong: dict[tuple[str, int], float] = {}
_probe_lock = threading.Lock()


def login(conn: Conn, username: str, password: str) -> Verify:
    """Log in as username; OK only when the server also refuses a deliberately wrong password."""
    first = _try_login(conn, username, password)
    if not first.ok:
        return first
    key = (conn.host, conn.port)
    with _probe_lock:
        if _refuses_wrong.get(key, 0.0) > time.monotonic():
            return OK
    probe = _try_login(conn, username, wrong_password())
    if probe.ok:
        with _probe_lock:
            _refuses_wrong.pop(key, None)
        return UNKNOWN(TRUST_REASON)
    if not probe.rejected:
        return UNKNOWN(f"could not check that the server refuses a wrong password: {probe.reason}")
    with _probe_lock:
        _refuses_wrong[key] = time.monotonic() + PROBE_TTL
    return OK


def _text(value: object) -> str:
    """A mysql.user column as text (some servers return its binary-collated columns as bytes)."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def native_hash(password: str) -> str:
    """mysql_native_password's stored form: '*' + upper hex SHA1(SHA1(password))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def ed25519_hash(password: str) -> str:
    """MariaDB auth_ed25519's stored form: base64 (no padding) of the public key of clamp(SHA-512(password)[:32])."""
    from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

    az = bytearray(hashlib.sha512(password.encode()).digest()[:32])
    az[0] &= 248
    az[31] &= 63
    az[31] |= 64
    return base64.b64encode(crypto_scalarmult_ed25519_base_noclamp(bytes(az))).decode().rstrip("=")


class MySQLDriver:
    """One admin connection (ALTER USER / CREATE USER privilege, SELECT on mysql.user) for mysql and mariadb."""

    def __init__(self, conn: Conn, login_user: str, password: str, *, params: object = None) -> None:
        check_db_username(login_user)
        self.conn = conn
        self.params = params if isinstance(params, HostParams) else HostParams()
        if not self.params.all_hosts:
            check_account_host(self.params.account_host)
        self._here: str | None = None  # keyturn's address as the server sees it
        self._users: dict[str, list[tuple[str, str, bool]]] | None = None  # mysql.user: name -> (host, plugin, matches here)
        self._lock_wait = 2**31 - 1  # lock_wait_timeout in force on this session (MySQL), only ever lowered
        try:
            self.db = _connect(conn, login_user, password)
            with self.db.cursor() as cur:
                cur.execute("SELECT VERSION()")
                self.mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
        except pymysql.MySQLError as exc:
            raise DriverError(f"cannot log in to {conn.platform} as {login_user}: {clean_error(exc, [password])}") from None

    def alive(self) -> bool:
        """Whether the admin connection is still open (no round trip: a dead one fails its next statement)."""
        return bool(self.db.open)

    def _entries(self, username: str) -> tuple[dict[str, str], str | None]:
        """(host -> auth plugin of the entries to change, Host of the entry a login from here would match).

        mysql.user is read once per driver (one asset's run), not once per account: a run over hundreds of
        users sent as many queries before their changes. An entry created after that read is not changed
        (as if it had been created just after the change); one dropped makes its ALTER USER fail, and the
        record says so. The server picks the most specific matching entry for a login: literal hosts before
        patterns, longer patterns before shorter ones, '%' last (close to the server's own sort, which is
        enough to refuse a change that no verification from here could see).
        """
        if self._users is None:
            with self.db.cursor() as cur:
                if self._here is None:
                    cur.execute("SELECT SUBSTRING_INDEX(USER(), '@', -1)")
                    self._here = str(cur.fetchone()[0])
                cur.execute("SELECT User, Host, plugin, %s LIKE Host FROM mysql.user", (self._here,))
                users: dict[str, list[tuple[str, str, bool]]] = {}
                for u, h, p, m in cur.fetchall():
                    users.setdefault(_text(u), []).append((_text(h), _text(p or ""), bool(m)))
            self._users = users
        rows = self._users.get(username, [])
        wanted = {h: p for h, p, _ in rows if self.params.all_hosts or h == self.params.account_host}
        matching = [h for h, _, m in rows if m]
        seen = sorted(matching, key=lambda h: ("%" in h or "_" in h, -len(h.replace("%", ""))))[0] if matching else None
        return wanted, seen

    def _spec(self, username: str, host: str, plugin: str, password: str) -> tuple[str, tuple[str, ...]]:
        if plugin in ("", "mysql_native_password"):
            if self.mariadb:
                return "%s@%s IDENTIFIED BY PASSWORD %s", (username, host, native_hash(password))
            return "%s@%s IDENTIFIED WITH mysql_native_password AS %s", (username, host, native_hash(password))
        if plugin == "ed25519" and self.mariadb:
            return "%s@%s IDENTIFIED VIA ed25519 USING %s", (username, host, ed25519_hash(password))
        # No client-computable stored form for this plugin (see the module docstring): the plaintext is sent.
        return "%s@%s IDENTIFIED BY %s", (username, host, password)

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """ALTER USER every chosen 'user'@'host' entry in one statement, under a server-side time limit."""
        check_db_username(username)
        budget = seconds_until(deadline, self.conn.command_timeout, self.conn.margin)
        if budget < 1:
            return PushResult(NOT_APPLIED, "too close to the record's deadline to start the change")
        try:
            entries, seen = self._entries(username)
        except pymysql.MySQLError as exc:
            return PushResult(NOT_APPLIED, f"cannot read mysql.user (grant SELECT on it to the admin): "
                                           f"{clean_error(exc)}")
        if not entries:
            which = f"user {username}" if self.params.all_hosts else f"account '{username}'@'{self.params.account_host}'"
            return PushResult(NOT_APPLIED, f"{which} does not exist")
        if not self.params.all_hosts and seen is not None and seen not in entries:
            return PushResult(NOT_APPLIED, f"a login from this host would use '{username}'@'{seen}', not the entry "
                                           "being changed, so no login could verify the change: set account_host="
                                           f"{seen} or all_hosts=true")
        specs = [self._spec(username, h, p, new_password) for h, p in sorted(entries.items())]
        stmt = "ALTER USER " + ", ".join(s for s, _ in specs)
        args = tuple(a for _, values in specs for a in values)
        limit = int(budget)
        if self.mariadb:
            # Both limits ride on the statement itself: no extra round trip per account.
            stmt = f"SET STATEMENT max_statement_time={limit}, lock_wait_timeout={limit} FOR " + stmt
        elif limit < self._lock_wait:
            try:
                with self.db.cursor() as cur:
                    cur.execute(f"SET SESSION lock_wait_timeout = {limit}")
                self._lock_wait = limit
            except pymysql.MySQLError as exc:
                return PushResult(NOT_APPLIED, f"before the change: {clean_error(exc)}")
        try:
            with self.db.cursor() as cur:
                cur.execute(stmt, args)
        except pymysql.MySQLError as exc:
            why = clean_error(exc, [new_password])
            if _code(exc) in LOST or isinstance(exc, pymysql.err.InterfaceError):
                return PushResult(AMBIGUOUS, f"connection lost during the change: {why}", in_flight=True)
            if len(specs) > 1:
                # A multi-user ALTER USER applies the entries it can: some may have changed.
                return PushResult(AMBIGUOUS, why)
            return PushResult(NOT_APPLIED, why)
        return PushResult(APPLIED)

    def install_key(self, username: str, public_line: str, strategy: str, *, deadline: float | None = None) -> PushResult:
        """Database users have passwords only."""
        raise DriverError(f"{self.conn.platform} users change passwords only, not SSH keys")

    def close(self) -> None:
        """Close the admin connection (and give back its gateway tunnel)."""
        try:
            self.db.close()
        except pymysql.MySQLError:
            pass
        finally:
            self.conn.release()
