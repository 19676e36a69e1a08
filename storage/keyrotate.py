"""Re-encrypt every vault value under a new master key, in one transaction, without a window to lose one."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from storage.db import Database
from storage.keyfile import key_path, load_keyring, read_key, retire_key, sync_dir, write_key
from storage.reseal import reseal_all
from storage.vault import KEY_BYTES, Vault, VaultError

PENDING_NAME = "master.key.new"


class RunInProgress(Exception):
    """A task run holds a lock: its process keeps the old key and would fail mid-rotation."""


def pending_key_path(home: Path) -> Path:
    """Where a rotation keeps the new key until the database has been re-encrypted."""
    return home / PENDING_NAME


def keyring_loader(home: Path) -> Callable[[bytes], Vault]:
    """What a Database calls when another process has rotated the key: the keyring current at that id."""
    return lambda key_id: load_keyring(home, key_id)


def rotate_master_key(db: Database, home: Path) -> tuple[int, Path]:
    """Re-encrypt all values under a fresh key; returns (values re-encrypted, path of the retired key).

    Order: new key to master.key.new; one transaction re-encrypts every value (the key check value too, so
    every other process sees the new key id at its next write and loads the new keyring before sealing);
    then the old key is kept as master.key.old-<date> and master.key.new becomes master.key. A crash before
    the commit leaves the old key valid; a crash after it is finished by finish_pending_rotation on next start.
    """
    new_key = os.urandom(KEY_BYTES)
    pending = pending_key_path(home)
    if pending.exists():
        pending.unlink()
    write_key(pending, new_key)
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
            count = reseal_all(conn, db.vault, Vault(new_key))
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    retired = retire_key(home)
    os.replace(pending, key_path(home))
    sync_dir(home)
    db.attach_vault(load_keyring(home), keyring_loader(home))
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
        db.attach_vault(Vault(read_key(pending), [read_key(key_path(home))]), keyring_loader(home))
    except VaultError:
        pending.unlink()  # the transaction never committed: the current key is still the right one
        return False
    retire_key(home)
    os.replace(pending, key_path(home))
    sync_dir(home)
    db.attach_vault(load_keyring(home), keyring_loader(home))
    return True
