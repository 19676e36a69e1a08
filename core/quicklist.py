"""Listings for the command line read without the ORM, when the vault is in its everyday state.

`keyturn asset list` opened the vault the full way (core.context.open_context): SQLAlchemy, SQLModel and every
table mapped before one row was read, most of its start-up. Here the common case -- SQLite (no database_url),
its file present and at the head revision, its keys in place -- is read with sqlite3 (storage/lite.py) after
the checks of open_database that can refuse a read, made by the same functions (storage.keyfile, the vault's
key check) or the same SQL. The operator's scope is applied as core.scopes.scope_filter applies it.

Every function returns None where it does not answer the same way as the full path -- a database server, an
older schema, a missing file or key (opening creates or refuses them), an unsafe permission, a key that does
not open the key check value, a node that does not exist, any sqlite3 error -- and the caller then takes the
full path, whose checks, migrations and error messages stay the only ones. Nothing is cached.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from storage import lite
from storage.keyfile import KeyFileError, audit_key_paths, ensure_data_dir, key_path, load_keyring, read_key
from storage.schema import HEAD_REVISION, KEY_CHECK_NAME
from storage.types import AssetInfo
from storage.vault import VaultError, blob_key_id

if TYPE_CHECKING:
    import sqlite3

    from core.config import Settings

__all__ = ["list_assets"]


class _FullPath(Exception):
    """A check found something the full path must handle (create, migrate or refuse)."""


@contextmanager
def _current_vault(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A read transaction on the vault, after the checks open_database makes (in its order) that decide whether
    it opens; _FullPath (or lite.LiteUnsupported) where it would create, migrate, repair or refuse instead."""
    if settings.database_url:
        raise _FullPath("a database server")
    home, path = settings.home, settings.db_path
    if not home.is_dir():
        raise _FullPath("no data directory yet (opening creates it), or not a directory (opening refuses)")
    os.umask(0o077)  # as open_database: anything SQLite creates beside the file stays owner-only
    ensure_data_dir(home)  # group/other access or another owner: KeyFileError
    if not path.is_file() or path.stat().st_size == 0 or not os.access(path, os.R_OK | os.W_OK):
        raise _FullPath("database missing, empty or not writable (opening creates, refuses or fails)")
    master, audit = key_path(home), audit_key_paths(home)[0]
    if not master.exists() or not audit.exists():
        raise _FullPath("a key file is missing (opening creates it, or refuses)")
    read_key(audit)  # what open_audit_key reads: owner-only, 32 bytes
    vault = load_keyring(home)  # master.key (load_or_create_key reads it alike), .new and .old-* keys
    with lite.read(path) as conn:
        if lite.schema_revision(conn) != HEAD_REVISION:
            raise _FullPath("the schema needs a migration")
        lite.has_secrets(conn)  # opening reads this; a table it cannot read makes the database damaged
        # Database.attach_vault: the current key must open the key check value, else opening refuses (or
        # finishes a rotation that was cut short).
        blob = lite.key_check_value(conn)
        if blob_key_id(blob) not in (None, vault.key_id):
            raise _FullPath("key check value sealed under another key")
        vault.decrypt(blob or b"", "vault_item", KEY_CHECK_NAME, "value_enc")  # VaultError when it does not open
        yield conn


def list_assets(settings: Settings, operator: str | None, *, node: str | None = None) -> list[AssetInfo] | None:
    """What `keyturn asset list [--node PATH]` lists for operator (core.listings.list_assets: assets in their
    scope, sorted by name), or None: take the full path."""
    try:
        with _current_vault(settings) as conn:
            scope = lite.scope_node_ids(conn, operator) if operator else None  # core.scopes.scope_filter
            return lite.list_assets(conn, node=node, scope=scope)
    except (_FullPath, lite.LiteUnsupported, KeyFileError, VaultError, OSError):
        return None
