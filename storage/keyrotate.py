"""Re-encrypt every vault value under a new master key, in one transaction, without a window to lose one."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from storage.db import Database
from storage.keyfile import key_path, read_key, retire_key, write_key
from storage.tables import ENCRYPTED_COLUMNS
from storage.vault import KEY_BYTES, Vault, VaultError

PENDING_NAME = "master.key.new"


class RunInProgress(Exception):
    """A task run holds a lock: its process keeps the old key and would fail mid-rotation."""


def pending_key_path(home: Path) -> Path:
    """Where a rotation keeps the new key until the database has been re-encrypted."""
    return home / PENDING_NAME


def rotate_master_key(db: Database, home: Path) -> tuple[int, Path]:
    """Re-encrypt all values under a fresh key; returns (values re-encrypted, path of the retired key).

    Order: new key to master.key.new; one transaction re-encrypts every value; then the old key is
    kept as master.key.old-<date> and master.key.new becomes master.key. A crash before the commit
    leaves the old key valid; a crash after it is finished by finish_pending_rotation on next start.
    """
    old = db.vault
    new_key = os.urandom(KEY_BYTES)
    new = Vault(new_key)
    pending = pending_key_path(home)
    if pending.exists():
        pending.unlink()
    write_key(pending, new_key)
    count = 0
    try:
        with db.write() as session:
            conn = session.connection()
            # Checked in the rotation's own (write-locked) transaction, so no run can start in between.
            from storage.tables import utcnow

            holders = [h for h, exp in conn.execute(text("SELECT holder, expires_at FROM task_lock")).all()
                       if _aware(exp) > utcnow()]
            if holders:
                raise RunInProgress(f"a task run holds a lock ({holders[0]}); rotate the master key once no run "
                                    "is in progress (a running process keeps the old key)")
            for table, (pk, columns) in ENCRYPTED_COLUMNS.items():
                rows = conn.execute(text(f"SELECT {pk}, {', '.join(columns)} FROM {table}")).all()
                for row in rows:
                    updates = {}
                    for i, column in enumerate(columns, start=1):
                        blob = row[i]
                        if blob is None:
                            continue
                        plain = old.decrypt(blob, table, row[0], column)
                        updates[column] = new.encrypt(plain, table, row[0], column)
                    if updates:
                        sets = ", ".join(f"{c} = :{c}" for c in updates)
                        conn.execute(text(f"UPDATE {table} SET {sets} WHERE {pk} = :pk"), {**updates, "pk": row[0]})
                        count += len(updates)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    retired = retire_key(home)
    os.replace(pending, key_path(home))
    db.attach_vault(new)
    return count, retired


def _aware(value: object) -> datetime:
    from datetime import timezone

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def finish_pending_rotation(db: Database, home: Path) -> bool:
    """If a rotation committed but was killed before swapping key files, finish it. True when it did."""
    pending = pending_key_path(home)
    if not pending.exists():
        return False
    try:
        db.attach_vault(Vault(read_key(pending)))
    except VaultError:
        pending.unlink()  # the transaction never committed: the current key is still the right one
        return False
    retire_key(home)
    os.replace(pending, key_path(home))
    return True
