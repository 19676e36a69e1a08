"""The engine factory and the Database handle: schema upgrade on open, sessions, and the vault."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import LargeBinary, create_engine, event, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from collections.abc import Callable

# The head revision, busy timeout and key check row live in storage.schema, shared with the ORM-free reader
# (storage/lite.py); imported from here as they always were.
from storage.schema import BUSY_TIMEOUT_MS, HEAD_REVISION, KEY_CHECK_NAME, KEY_CHECK_TEXT
from storage.hotsql import HotStatement
from storage.tables import ENCRYPTED_COLUMNS, VaultItem, binding_columns
from storage.vault import Vault, VaultError, blob_key_id

MIGRATIONS = Path(__file__).with_name("migrations")
# Built once: every write transaction runs it (building a text() statement costs more than executing it).
_KEY_GENERATION = HotStatement(text("SELECT value_enc FROM vault_item WHERE name = :n").columns(value_enc=LargeBinary))


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """Build an engine; for SQLite: WAL, a busy timeout, foreign keys, and BEGIN emitted by us.

    Other servers (PostgreSQL) keep their own BEGIN and READ COMMITTED; the places where SQLite's single
    writer gave correctness take row or advisory locks themselves (storage/txlocks.py).
    """
    if not url.startswith("sqlite"):
        # The engine's worker threads each hold a connection while they settle a record: let the pool
        # grow with them instead of making them wait 30 s for one, and drop connections a server restart cut.
        args: dict = {"connect_timeout": 10, "application_name": "keyturn"} if url.startswith("postgresql") else {}
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=30, connect_args=args)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # pysqlite's own BEGIN handling is replaced by _on_begin
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # FULL: a committed `pending` record must survive a power cut, not just a crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Writers take the lock up front so two processes queue on busy_timeout instead of
        # failing with SQLITE_BUSY when a read transaction tries to become a write.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An open keyturn database: sessions for reading and writing, and the vault for its secrets."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._vault: Vault | None = None
        # Loads the keyring holding a given key id from the data directory (set by whoever opened the vault).
        self._keyring_loader: Callable[[bytes], Vault] | None = None
        # The audit chain's HMAC key (from audit.key); None only for a database opened without its data dir.
        self.audit_key: bytes | None = None

    # -- schema -----------------------------------------------------------------------------------
    def upgrade(self, vault: Vault | None = None) -> None:
        """Bring the schema to the newest Alembic revision (Alembic is only loaded when behind).

        vault: the master key, for migrations that re-seal stored values (0004).
        """
        if self.current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Workers starting together on an empty server: one migrates, the rest wait and find head.
                from storage.txlocks import MIGRATE, advisory_key

                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(MIGRATE)})
            cfg.attributes["connection"] = conn
            cfg.attributes["vault"] = vault
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it has no schema yet."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    # -- sessions ---------------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (no write lock taken)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error: nothing half-written."""
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                self._check_key_generation(session.connection())
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """write() without the ORM: a Core connection in one write transaction, committed on success and
        rolled back on any error. For the engine's hot path (a run's record steps), where a Session's set-up
        and unit of work cost more CPU than the statements themselves."""
        with self._write_engine.begin() as conn:
            self._check_key_generation(conn)
            yield conn

    # -- vault ------------------------------------------------------------------------------------
    @property
    def vault(self) -> Vault:
        """The vault cipher; set by attach_vault once the master key is loaded."""
        if self._vault is None:
            raise VaultError("the vault is not open (no master key loaded)")
        return self._vault

    def has_secrets(self) -> bool:
        """Whether any encrypted value is stored (then a missing master key is fatal)."""
        with self.engine.connect() as conn:
            for table, (_pk, columns) in ENCRYPTED_COLUMNS.items():
                cond = " OR ".join(f"{c} IS NOT NULL" for c in columns)
                if conn.execute(text(f"SELECT 1 FROM {table} WHERE {cond} LIMIT 1")).first():
                    return True
        return False

    def attach_vault(self, vault: Vault, keyring_loader: Callable[[bytes], Vault] | None = None) -> None:
        """Use this vault; check its current key against the stored key check value (or store one first).

        keyring_loader(key_id) gives the keyring whose current key has that id; with it, every write
        transaction follows a master key rotated by another process instead of sealing under a stale key.
        """
        self._vault = None
        with self.write() as session:
            item = session.get(VaultItem, KEY_CHECK_NAME)
            if item is None:
                item = VaultItem(name=KEY_CHECK_NAME)
                item.value_enc = vault.encrypt(KEY_CHECK_TEXT, "vault_item", KEY_CHECK_NAME, "value_enc")
                session.add(item)
            else:
                try:
                    if blob_key_id(item.value_enc) not in (None, vault.key_id):
                        raise VaultError("key check sealed under another key")
                    vault.decrypt(item.value_enc or b"", "vault_item", KEY_CHECK_NAME, "value_enc")
                except VaultError:
                    raise VaultError(
                        "the master key does not match this database (its key check value does not verify); "
                        "use the key file this database was created with"
                    ) from None
        self._vault = vault
        self._keyring_loader = keyring_loader

    def _check_key_generation(self, conn: Connection) -> None:
        """In a write transaction: if another process rotated the master key, load the new keyring first.

        Reading the key check value takes the write lock (BEGIN IMMEDIATE), so no rotation can commit
        between this check and the seals of this transaction.
        """
        if self._vault is None or self._keyring_loader is None:
            return
        blob = _KEY_GENERATION.execute(conn, {"n": KEY_CHECK_NAME}).scalar()
        current = blob_key_id(blob)
        if current is None or current == self._vault.key_id:
            return
        self._vault = self._keyring_loader(current)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- encrypted fields -------------------------------------------------------------------------
    def seal(self, row: object, column: str, value: str | None) -> None:
        """Encrypt value into row.column (the row must have its id), or clear it for None."""
        table = row.__tablename__  # type: ignore[attr-defined]
        setattr(row, column, self._seal(table, column, lambda c: getattr(row, c), value))

    def unseal(self, row: object, column: str) -> str | None:
        """Decrypt row.column, None when empty."""
        table = row.__tablename__  # type: ignore[attr-defined]
        return self._unseal(table, column, lambda c: getattr(row, c), getattr(row, column))

    def seal_value(self, table: str, row: Mapping[Any, Any], column: str, value: str | None) -> bytes | None:
        """The ciphertext of value for table.column of a row given as its column values (the id included).

        For bulk writes that build plain rows: the same associated data as seal(), so a value is bound to its
        row id, field and binding columns whichever way it was written.
        """
        return self._seal(table, column, row.__getitem__, value)

    def unseal_value(self, table: str, row: Mapping[Any, Any], column: str) -> str | None:
        """Decrypt table.column of a row given as its column values (a result row's mapping); None when empty."""
        return self._unseal(table, column, row.__getitem__, row[column])

    def _seal(self, table: str, column: str, get: Callable[[str], Any], value: str | None) -> bytes | None:
        if value is None:
            return None
        binding = {c: get(c) for c in binding_columns(table, column)}
        return self.vault.encrypt(value, table, get(ENCRYPTED_COLUMNS[table][0]), column, binding)

    def _unseal(self, table: str, column: str, get: Callable[[str], Any], blob: bytes | None) -> str | None:
        if blob is None:
            return None
        binding = {c: get(c) for c in binding_columns(table, column)}
        return self.vault.decrypt(blob, table, get(ENCRYPTED_COLUMNS[table][0]), column, binding)

    def select_one(self, session: Session, stmt) -> object | None:  # type: ignore[no-untyped-def]
        """First row of a select, or None."""
        return session.exec(stmt).first()


__all__ = ["BUSY_TIMEOUT_MS", "HEAD_REVISION", "KEY_CHECK_NAME", "KEY_CHECK_TEXT", "Database", "make_engine", "select",
           "sqlite_url"]
