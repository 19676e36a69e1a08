"""Named locks held to the end of a write transaction, where SQLite's single writer gave the order for free.

On SQLite every db.write() starts with BEGIN IMMEDIATE, so one writer runs at a time and a read-then-write
inside it (the audit chain's head, a counter) cannot interleave with another process. PostgreSQL runs
writers side by side, so those few places take a transaction-scoped advisory lock (released by COMMIT or
ROLLBACK, also when the process dies) or lock the row they read with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlmodel import Session


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(f"keyturn:{name}".encode()).digest()[:8], "big", signed=True)


def hold(session: Session, name: str) -> None:
    """Take the named lock until this transaction ends; a no-op on SQLite, whose writer lock is already held."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})


AUDIT_APPEND = "audit_event.append"
MIGRATE = "alembic.upgrade"
