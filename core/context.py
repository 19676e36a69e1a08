"""Opening keyturn: data directory, database schema, master key and vault, in that order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from core.errors import DatabaseDamagedError, InputError, UnsafeSetupError
from storage.audit import open_audit_key
from storage.db import HEAD_REVISION, Database
from storage.keyrotate import finish_pending_rotation, keyring_loader
from storage.keyfile import KeyFileError, ensure_data_dir, load_keyring, load_or_create_key
from storage.vault import Vault, VaultError


@dataclass
class Context:
    """What every command and screen works with: settings, the open database, who is acting."""

    settings: Settings
    db: Database
    operator: str | None = None
    source: str = ""  # terminal / SSH client the person is acting from (for the audit trail)
    # Who has given a good TOTP code in this session (the app's unlock window; one code per CLI command).
    mfa: Any = None  # core.mfa.MfaSession (not imported here: core.mfa imports this module)

    @property
    def home(self) -> Path:
        """The data directory."""
        return self.settings.home

    def close(self) -> None:
        """Release the database."""
        self.db.close()


def _check_database_file(settings: Settings, *, create: bool) -> None:
    """A missing or emptied SQLite file next to an existing master key is a lost vault, not a new one."""
    from storage.keyfile import key_path

    if settings.database_url:
        return
    path, key = settings.db_path, key_path(settings.home)
    empty = not path.exists() or path.stat().st_size == 0
    if empty and key.exists() and not create:
        state = "missing" if not path.exists() else "empty"
        raise DatabaseDamagedError(
            f"the database {path} is {state}, but the master key {key} exists: the vault it belongs to is gone. "
            "Restore the database from a backup; or, to start a new empty vault here on purpose, run `keyturn init`")


def open_database(settings: Settings, *, create: bool = False) -> Database:
    """Check the data directory, upgrade the schema, load (or create) the master key and open the vault.

    A fresh vault is created only where no master key exists yet, or with create=True (`keyturn init`).
    """
    from sqlalchemy.exc import DatabaseError, OperationalError

    # Database, WAL and temp files are created owner-only; secrets are encrypted, but names and hosts are not.
    os.umask(0o077)
    try:
        ensure_data_dir(settings.home)
        _check_database_file(settings, create=create)
        db = Database(settings.effective_database_url)
        try:
            if db.current_revision() is None:
                db.upgrade()  # a new database: the schema first, there is nothing to re-seal
            has_secrets = db.has_secrets()
        except DatabaseError as exc:
            db.close()
            if settings.database_url and isinstance(exc, OperationalError):
                raise  # a server that does not answer or refuses us is not a damaged database (below)
            reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
            where = settings.db_path if not settings.database_url else "the configured database"
            raise DatabaseDamagedError(f"the database {where} cannot be read ({reason}); it is damaged or not a "
                                       "keyturn database. Restore it from a backup") from None
        key = load_or_create_key(settings.home, database_has_secrets=has_secrets)
        if db.current_revision() != HEAD_REVISION:
            # Migrations that re-seal values (0004) need the key; values of an older format are read once.
            db.upgrade(vault=Vault(key, accept_v1=True))
        open_audit_key(db, settings.home)
        try:
            db.attach_vault(load_keyring(settings.home), keyring_loader(settings.home))
        except VaultError:
            if not finish_pending_rotation(db, settings.home):
                raise
    except (KeyFileError, VaultError) as exc:
        raise UnsafeSetupError(str(exc)) from None
    except SQLAlchemyError as exc:  # a database server that is down or refuses us: say which, no traceback
        from core.database import unavailable

        raise unavailable(settings, exc) from None
    return db


def init_vault(settings: Settings) -> Path:
    """`keyturn init`: create a new empty vault where none is in use (never over a database that holds data)."""
    if not settings.database_url and settings.db_path.exists() and settings.db_path.stat().st_size > 0:
        raise InputError(f"init: the database {settings.db_path} already exists; keyturn init never replaces a "
                         "database (move it away first if you really mean to start over)")
    open_database(settings, create=True).close()
    return settings.db_path


def open_context(settings: Settings, operator: str | None = None, source: str = "") -> Context:
    """Open keyturn for one process."""
    return Context(settings=settings, db=open_database(settings), operator=operator, source=source)
