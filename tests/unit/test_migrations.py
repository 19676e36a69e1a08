"""Migrations: an empty database upgrades to a schema identical to the models, with SQLite tuned for sharing."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import storage.tables  # noqa: F401
from storage.db import HEAD_REVISION, Database, sqlite_url


def test_empty_database_upgrades_to_head_matching_models(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "k.db"))
    assert db.current_revision() is None
    db.upgrade()
    assert db.current_revision() == HEAD_REVISION
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == [], f"migrations and models disagree: {diff}"
    db.upgrade()  # idempotent
    db.close()


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "k.db"))
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.close()


def test_two_writers_on_one_file_queue_instead_of_failing(tmp_path: Path) -> None:
    """The TUI, a CLI run and the scheduler share one file: concurrent writers must wait, not error."""
    import threading

    from storage.tables import VaultItem

    path = tmp_path / "k.db"
    Database(sqlite_url(path)).upgrade()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        db = Database(sqlite_url(path))
        try:
            for i in range(30):
                with db.write() as s:
                    s.add(VaultItem(name=f"w{n}-{i}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(sqlite_url(path))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vault_item")).scalar() == 120
    db.close()


def test_head_revision_constant_matches_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage.db import HEAD_REVISION, MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
