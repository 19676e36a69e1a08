"""Defect 6: a damaged, emptied or deleted database is a clear error (exit 2), never a silent fresh vault."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings


def _make_vault(keyturn_cli) -> None:  # noqa: ANN001
    assert keyturn_cli("asset", "list").returncode == 0  # first start: creates key and database


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_a_clear_error_with_exit_2(settings: Settings, keyturn_cli, damage: str) -> None:  # noqa: ANN001
    _make_vault(keyturn_cli)
    db: Path = settings.db_path
    data = db.read_bytes()
    db.write_bytes(data[:1500] if damage == "truncated" else b"this is not a database at all\n" * 200)
    for wal in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        wal.unlink(missing_ok=True)
    proc = keyturn_cli("asset", "list")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "sqlalchemy" not in proc.stderr.lower()
    assert f"the database {db} cannot be read" in proc.stderr and "backup" in proc.stderr


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_database_next_to_its_key_is_not_silently_replaced(settings: Settings, keyturn_cli, how: str) -> None:  # noqa: ANN001
    _make_vault(keyturn_cli)
    db: Path = settings.db_path
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")
    proc = keyturn_cli("asset", "list")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "master key" in proc.stderr and "keyturn init" in proc.stderr and "Traceback" not in proc.stderr
    assert not db.exists() or db.stat().st_size == 0  # nothing was created in its place
    init = keyturn_cli("init")
    assert init.returncode == 0, init.stderr
    assert keyturn_cli("asset", "list").returncode == 0
    again = keyturn_cli("init")
    assert again.returncode == 2 and "already exists" in again.stderr
