"""What the ORM-free reader (storage/lite.py) shares with storage.db and storage.tables, without importing them.

Plain constants only: importing this module must stay free (`keyturn asset list` reads through it).
"""

from __future__ import annotations

# The newest migration; checked against Alembic's own view by a test. Lets a current database open
# without importing Alembic, which costs a noticeable part of every command's start-up.
HEAD_REVISION = "0009"

# SQLite waits this long for a lock another process holds before it gives up.
BUSY_TIMEOUT_MS = 30_000

# The vault_item row whose sealed text proves that the master key belongs to this database.
KEY_CHECK_NAME = "vault.key-check"
KEY_CHECK_TEXT = "keyturn master key check"

# (table, primary-key column, encrypted columns): the associated data of each value uses that key.
ENCRYPTED_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "account": ("id", ("secret_enc", "passphrase_enc", "become_secret_enc")),
    "account_secret_history": ("id", ("secret_enc", "passphrase_enc")),
    "change_secret_task": ("id", ("specific_secret_enc", "specific_passphrase_enc", "become_password_enc")),
    "change_record": ("id", ("old_secret_enc", "old_passphrase_enc", "new_secret_enc", "new_passphrase_enc")),
    "operator": ("id", ("totp_secret_enc",)),
    "vault_item": ("name", ("value_enc",)),
}


def normalize_node_path(path: str) -> str:
    """'/prod//db/' -> '/prod/db'; raises ValueError for an empty or root-only path."""
    parts = [p.strip() for p in path.strip().split("/") if p.strip()]
    if not parts:
        raise ValueError(f"node path {path!r} is empty")
    return "/" + "/".join(parts)
