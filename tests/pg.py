"""Throw-away PostgreSQL databases for the tests that run on both storage backends.

The tests' server (SERVER) is a private cluster each test process starts once (use_private_server: durability
off, so the DROP DATABASE after each test does not checkpoint to disk, and no other suite's databases share
it), unless KEYTURN_TEST_PG names one (a libpq URL of a role allowed to CREATE DATABASE). The machine's own server
(MACHINE_SERVER: 127.0.0.1:5432, trust for the user postgres, or KEYTURN_TEST_PG) still serves the test that
keyturn's storage works on a stock, durable server (tests/unit/test_postgres.py). Every database made here is
named keyturn_t_<pid>_<n> and dropped again, so parallel test runs and other users of a server are left alone.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future

import psycopg
import psycopg.types.json
from psycopg import sql

MACHINE_SERVER = os.environ.get("KEYTURN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER = MACHINE_SERVER  # the tests' server: use_private_server() points it at a private cluster
_names = itertools.count(1)


class ServerUnavailable(Exception):
    """No PostgreSQL server answered (the reason is in the message)."""


def _admin(server: str | None = None) -> psycopg.Connection:
    server = server or SERVER
    try:
        return psycopg.connect(server, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise ServerUnavailable(f"no PostgreSQL server at {server}: {exc}") from None


def check_server(server: str | None = None) -> str:
    """The server's (default: SERVER's) version string, or ServerUnavailable."""
    with _admin(server) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


def sqlalchemy_url(dbname: str, server: str | None = None) -> str:
    """keyturn's database_url for one database on the test server (or on server; psycopg 3 driver)."""
    info = psycopg.conninfo.conninfo_to_dict(server or SERVER)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{dbname}"


def create_database(template: str | None = None, server: str | None = None) -> str:
    """CREATE a new empty database (or a copy of template) on SERVER (or server); returns its name."""
    name = f"keyturn_t_{os.getpid()}_{next(_names)}"
    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    with _admin(server) as conn:
        conn.execute(stmt)
    return name


def drop_database(name: str, server: str | None = None) -> None:
    """DROP a database made by create_database, ending sessions a killed test process left behind."""
    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def use_private_server() -> object:
    """Start a private cluster (tests.dbservers.StoragePostgresServer), make it SERVER; returns it (close() it)."""
    from tests import dbservers

    global SERVER
    try:
        server = dbservers.StoragePostgresServer()
    except dbservers.ServerUnavailable as exc:
        raise ServerUnavailable(f"cannot start a private PostgreSQL server: {exc}") from None
    SERVER = f"postgresql://{server.admin_user}@127.0.0.1:{server.port}/postgres"
    return server


class Spares:
    """Copies of a template database made one test ahead, off the tests' path.

    CREATE DATABASE ... TEMPLATE takes half a second or more (the server writes the copy out); a test only needs
    its database when it starts, so while one test runs the copy for the next is made. (Drops stay in each
    test's teardown: a DROP DATABASE checkpoints the server, and dropping in the background only piles the
    checkpoints up behind the tests.) finish() drops the copies nobody took.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pg-spare")
        self._spare: dict[str, Future[str]] = {}

    def copy_of(self, template: str) -> str:
        """A new database copied from template: the spare made while the previous test ran, and a new spare."""
        ready = self._spare.pop(template, None) or self._pool.submit(create_database, template)
        self._spare[template] = self._pool.submit(create_database, template)
        return ready.result()

    def finish(self) -> None:
        """Drop the spare copies."""
        spares, self._spare = list(self._spare.values()), {}
        for spare in spares:
            drop_database(spare.result())


class RawConnection:
    """A plain autocommit connection to a test's keyturn database, as a tamperer would use: SQLite or PostgreSQL.

    SQL is written with ? placeholders (SQLite's); they are translated for psycopg.
    """

    def __init__(self, database_url: str, sqlite_path: os.PathLike[str] | str) -> None:
        self.postgres = database_url.startswith("postgresql")
        if self.postgres:
            self.conn = psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True)
        else:
            import sqlite3

            self.conn = sqlite3.connect(sqlite_path, isolation_level=None)  # type: ignore[assignment]

    def execute(self, statement: str, params: tuple = ()):  # type: ignore[no-untyped-def]
        """Run one statement; returns the cursor."""
        if self.postgres:
            statement = statement.replace("?", "%s")
            params = tuple(psycopg.types.json.Json(p) if isinstance(p, dict | list) else p for p in params)
        return self.conn.execute(statement, params)  # type: ignore[arg-type]

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def raw_connection(settings) -> RawConnection:  # type: ignore[no-untyped-def]
    """RawConnection to the database a keyturn Settings object points at."""
    return RawConnection(settings.database_url, settings.db_path)


def stored_bytes(settings) -> bytes:  # type: ignore[no-untyped-def]
    """Everything the database holds, as raw bytes to search for a leaked secret.

    SQLite: the file and its WAL. PostgreSQL: every table copied out in binary form, so text and bytea
    values appear as the bytes stored (a plaintext secret in a bytea column is found too).
    """
    if not settings.database_url.startswith("postgresql"):
        return b"".join(p.read_bytes() for p in settings.home.glob("keyturn.db*") if p.is_file())
    out = bytearray()
    with psycopg.connect(settings.database_url.replace("+psycopg", "")) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            query = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
            with conn.cursor().copy(query) as copy:
                for block in copy:
                    out += bytes(block)
    return bytes(out)
