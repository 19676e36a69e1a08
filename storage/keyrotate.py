"""Re-encrypt every vault value under a new master key, in one transaction, without a window to lose one."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from storage.db import Database
from storage.keyfile import key_path, read_key, retire_key, sync_dir, write_key
from storage.tables import ENCRYPTED_COLUMNS
from storage.vault import KEY_BYTES, Vault, VaultError

PENDING_NAME = "master.key.new"


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
    sync_dir(home)
    db.attach_vault(new)
    return count, retired


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
    sync_dir(home)
    return True
