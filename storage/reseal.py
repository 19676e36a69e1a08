"""Re-seal every vault value from one keyring to another in the caller's transaction (raw SQL, so the
0004 migration and master key rotation share it without depending on the ORM models of a later release)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.tables import ENCRYPTED_COLUMNS, binding_columns
from storage.vault import Vault


def reseal_all(conn: Connection, old: Vault, new: Vault) -> int:
    """Decrypt each value with old and encrypt it with new (same row, field and binding); how many values."""
    count = 0
    for table, (pk, columns) in ENCRYPTED_COLUMNS.items():
        extra = sorted({c for column in columns for c in binding_columns(table, column)})
        rows = conn.execute(text(f"SELECT {', '.join([pk, *columns, *extra])} FROM {table}")).mappings().all()
        for row in rows:
            updates = {}
            for column in columns:
                blob = row[column]
                if blob is None:
                    continue
                binding = {c: row[c] for c in binding_columns(table, column)}
                plain = old.decrypt(bytes(blob), table, row[pk], column, binding)
                updates[column] = new.encrypt(plain, table, row[pk], column, binding)
            if updates:
                sets = ", ".join(f"{c} = :{c}" for c in updates)
                conn.execute(text(f"UPDATE {table} SET {sets} WHERE {pk} = :kt_pk"), {**updates, "kt_pk": row[pk]})
                count += len(updates)
    return count
