"""The `postgresql` platform: `ALTER ROLE ... PASSWORD '<SCRAM-SHA-256 verifier>'`, computed on the client.

The new password becomes a salted SCRAM-SHA-256 verifier here (`scram_verifier`: what libpq's
PQencryptPasswordConn, behind psql's `\\password`, computes), so the plaintext never reaches the server, its logs
(`log_statement=all` shows only the verifier) or pg_stat_statements.

The change runs under `statement_timeout`, set from the record's deadline, so the server itself abandons it
(and rolls it back) before the deadline: a push whose end was lost cannot land after reconcile judged it.
Through an SSH gateway libpq connects to the tunnel's loopback port (`hostaddr`) while `host` stays the
asset's address, so `verify-full` checks the certificate against the name the asset really has.
A verification logs in as the role; it counts only when the server asked for the password (libpq's
PQconnectionUsedPassword): a role let in by `trust` proves nothing, and the answer is UNKNOWN with that reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import psycopg
from psycopg import sql

from core.drivers.base import AMBIGUOUS, APPLIED, NOT_APPLIED, OK, REJECTED, UNKNOWN, DriverError, PushResult, Verify
from core.drivers.dbconn import TRUST_REASON, Conn, check_db_username, clean_error, seconds_until

NO_SQLSTATE_LOST = ("08000", "08003", "08006", "57P01", "57P02", "57P03")
SCRAM_ITERATIONS = 4096  # libpq's and the server's default (PostgreSQL 16 reports its own as scram_iterations)


def scram_verifier(pg: psycopg.Connection, username: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of password (RFC 5802/7677, PostgreSQL's format), computed here.

    For printable ASCII, SASLprep (which libpq applies first) changes nothing, so the verifier is computed with
    hashlib, whose PBKDF2 lets go of the GIL: libpq's PQencryptPasswordConn holds it for its 4096 rounds (5-7 ms
    on a loaded core), stopping every other engine thread meanwhile. Anything else goes through libpq itself.
    """
    if not password or not all(" " <= c <= "~" for c in password):
        return pg.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256").decode()
    iterations = int(pg.info.parameter_status("scram_iterations") or SCRAM_ITERATIONS)
    return scram_sha256(password, secrets.token_bytes(16), iterations)


def scram_sha256(password: str, salt: bytes, iterations: int) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for an already SASLprep'd password."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server = hmac.digest(salted, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored)}:{_b64(server)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _kwargs(conn: Conn, user: str, password: str) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "host": conn.host, "port": conn.port, "user": user, "password": password,
        "dbname": conn.database or "postgres", "connect_timeout": max(1, round(conn.connect_timeout)),
        "sslmode": {"disable": "disable", "require": "require", "verify-full": "verify-full"}[conn.tls],
        "application_name": "keyturn",
        # A silent network makes the kernel give up on the socket instead of blocking a worker forever.
        "tcp_user_timeout": int(conn.command_timeout * 1000), "keepalives": 1, "keepalives_idle": 10,
        "keepalives_interval": 5, "keepalives_count": 3,
    }
    if conn.ca_file:
        kw["sslrootcert"] = conn.ca_file
    if conn.tunneled is not None and conn.server_name:
        # Through a gateway: connect to the tunnel (hostaddr, numeric, no lookup) but let libpq check the
        # certificate (verify-full) against the asset's real address, as a direct connection would.
        kw["host"], kw["hostaddr"] = conn.server_name, conn.host
    return kw


def login(conn: Conn, username: str, password: str) -> Verify:
    """Connect as username with password: OK only when the server really checked the password."""
    try:
        pg = psycopg.connect(**_kwargs(conn, username, password), autocommit=True)
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or ("role \"" in text and "does not exist" in text):
            return REJECTED
        return UNKNOWN(clean_error(exc, [password]))
    try:
        asked = pg.pgconn.used_password
    finally:
        pg.close()
    return OK if asked else UNKNOWN(TRUST_REASON)


class PostgresDriver:
    """One superuser (or CREATEROLE) connection that changes role passwords."""

    def __init__(self, conn: Conn, login_user: str, password: str, *, params: object = None) -> None:
        check_db_username(login_user)
        self.conn = conn
        self.login_user = login_user
        # The statement_timeout in force on this session (ms); a change only lowers it (see change_password).
        self._timeout_ms = 2**31 - 1
        try:
            self.pg = psycopg.connect(**_kwargs(conn, login_user, password), autocommit=True)
        except psycopg.Error as exc:
            raise DriverError(f"cannot log in to PostgreSQL as {login_user}: {clean_error(exc, [password])}") from None

    def alive(self) -> bool:
        """Whether the admin connection can still be used."""
        return not self.pg.closed and not self.pg.broken

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """ALTER ROLE username PASSWORD '<verifier>' under a statement_timeout that ends before deadline.

        A missing role is the server's own answer (undefined_object): no query more per account.
        """
        check_db_username(username)
        budget = seconds_until(deadline, self.conn.command_timeout, self.conn.margin)
        if budget < 1:
            return PushResult(NOT_APPLIED, "too close to the record's deadline to start the change")
        try:
            verifier = scram_verifier(self.pg, username, new_password)
            timeout_ms = int(budget * 1000)
            if timeout_ms < self._timeout_ms:  # a shorter limit than the one in force: one round trip, only then
                self.pg.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(timeout_ms)))
                self._timeout_ms = timeout_ms
        except psycopg.Error as exc:
            return PushResult(NOT_APPLIED, f"before the change: {clean_error(exc, [new_password])}")
        stmt = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(username), sql.Literal(verifier))
        try:
            self.pg.execute(stmt)
        except psycopg.errors.UndefinedObject:
            return PushResult(NOT_APPLIED, f"role {username} does not exist")
        except psycopg.OperationalError as exc:
            if self.pg.broken or exc.sqlstate in NO_SQLSTATE_LOST or exc.sqlstate is None:
                # The statement may have reached the server: it ends (commits or rolls back) by statement_timeout.
                return PushResult(AMBIGUOUS, f"connection lost during the change: {clean_error(exc, [new_password])}",
                                  in_flight=True)
            return PushResult(NOT_APPLIED, clean_error(exc, [new_password]))
        except psycopg.Error as exc:
            # The server refused (no privilege, statement timeout): the statement rolled back, the role is unchanged.
            return PushResult(NOT_APPLIED, clean_error(exc, [new_password]))
        return PushResult(APPLIED)

    def install_key(self, username: str, public_line: str, strategy: str, *, deadline: float | None = None) -> PushResult:
        """Database roles have passwords only."""
        raise DriverError("postgresql roles change passwords only, not SSH keys")

    def close(self) -> None:
        """Close the admin connection (and give back its gateway tunnel)."""
        try:
            self.pg.close()
        finally:
            self.conn.release()
