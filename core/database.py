"""keyturn's own database as an administrator sees it: where it is, which schema revision, and upgrading it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from core.errors import KeyturnError, UnsafeSetupError
from storage.db import HEAD_REVISION, Database
from storage.keyfile import KeyFileError, ensure_data_dir


class DatabaseUnavailable(KeyturnError):
    """keyturn's database cannot be reached or read (server down, wrong URL, no permission)."""

    exit_code = 2


@dataclass(frozen=True)
class DatabaseStatus:
    """Where the database is (password hidden), its backend, and its schema revision against the newest."""

    url: str
    backend: str
    revision: str | None
    head: str

    @property
    def current(self) -> bool:
        """Whether the schema is at the newest revision."""
        return self.revision == self.head


def shown_url(url: str) -> str:
    """The database URL with any password masked, safe for a terminal or a log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown by its scheme only
        return url.split(":", 1)[0] + ":..."


def unavailable(settings: Settings, exc: BaseException) -> DatabaseUnavailable:
    """A clear error for a database that did not answer; the driver's first line says why (no secret in it)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(f"cannot use the database {shown_url(settings.effective_database_url)}: {reason}")


def _prepare(settings: Settings) -> None:
    # The default SQLite file lives in the data directory: create it safely, as opening keyturn does.
    if not settings.database_url:
        os.umask(0o077)
        try:
            ensure_data_dir(settings.home)
        except KeyFileError as exc:
            raise UnsafeSetupError(str(exc)) from None


def database_status(settings: Settings) -> DatabaseStatus:
    """Read the schema revision without changing anything."""
    _prepare(settings)
    url = settings.effective_database_url
    db = Database(url)
    try:
        return DatabaseStatus(shown_url(url), db.engine.dialect.name, db.current_revision(), HEAD_REVISION)
    except SQLAlchemyError as exc:
        raise unavailable(settings, exc) from None
    finally:
        db.close()


def upgrade_database(settings: Settings) -> tuple[DatabaseStatus, DatabaseStatus]:
    """Apply every pending migration (several processes at once are safe); the status before and after."""
    before = database_status(settings)
    db = Database(settings.effective_database_url)
    try:
        db.upgrade()
    except SQLAlchemyError as exc:
        raise unavailable(settings, exc) from None
    finally:
        db.close()
    return before, database_status(settings)
