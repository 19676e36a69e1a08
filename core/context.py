"""Opening keyturn: data directory, database schema, master key and vault, in that order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from core.errors import UnsafeSetupError
from storage.db import Database
from storage.keyrotate import finish_pending_rotation
from storage.keyfile import KeyFileError, ensure_data_dir, load_or_create_key
from storage.vault import Vault, VaultError


@dataclass
class Context:
    """What every command and screen works with: settings, the open database, who is acting."""

    settings: Settings
    db: Database
    operator: str | None = None
    source: str = ""  # terminal / SSH client the person is acting from (for the audit trail)

    @property
    def home(self) -> Path:
        """The data directory."""
        return self.settings.home

    def close(self) -> None:
        """Release the database."""
        self.db.close()


def open_database(settings: Settings) -> Database:
    """Check the data directory, upgrade the schema, load (or create) the master key and open the vault."""
    # Database, WAL and temp files are created owner-only; secrets are encrypted, but names and hosts are not.
    os.umask(0o077)
    try:
        ensure_data_dir(settings.home)
        db = Database(settings.effective_database_url)
        db.upgrade()
        key = load_or_create_key(settings.home, database_has_secrets=db.has_secrets())
        try:
            db.attach_vault(Vault(key))
        except VaultError:
            if not finish_pending_rotation(db, settings.home):
                raise
    except (KeyFileError, VaultError) as exc:
        raise UnsafeSetupError(str(exc)) from None
    except SQLAlchemyError as exc:  # a database server that is down or refuses us: say which, no traceback
        from core.database import unavailable

        raise unavailable(settings, exc) from None
    return db


def open_context(settings: Settings, operator: str | None = None, source: str = "") -> Context:
    """Open keyturn for one process."""
    return Context(settings=settings, db=open_database(settings), operator=operator, source=source)
