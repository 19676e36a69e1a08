"""Reading a current SQLite vault with the standard library's sqlite3: no SQLAlchemy, no SQLModel.

`keyturn asset list` spends most of its start-up importing the ORM and mapping every table; this module
answers the same listing with the same SQL on a read-only connection. It handles only what it knows: any
sqlite3 error, a value of an unexpected type, or a question it would have to answer differently from the
ORM path (a node that does not exist) raises LiteUnsupported, and the caller takes that path instead
(core/quicklist.py), so its errors, wording and migrations stay the only ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from storage import likes
from storage.schema import BUSY_TIMEOUT_MS, ENCRYPTED_COLUMNS, KEY_CHECK_NAME, normalize_node_path
from storage.types import AssetInfo, HostKeyInfo

Scope = frozenset[int] | None  # as storage.inventory.Scope: node ids, subtrees expanded; None: no limit


class LiteUnsupported(Exception):
    """This reader does not answer here; open the vault the full way (core.context.open_context)."""


@contextmanager
def read(path: Path) -> Iterator[sqlite3.Connection]:
    """One read transaction on the SQLite file at path, opened read-only (it never creates or changes it).

    Every sqlite3 error inside, the caller's queries included, comes out as LiteUnsupported."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise LiteUnsupported(f"sqlite3: {exc}") from None
    try:
        conn.execute("BEGIN")  # one snapshot for every query, as the ORM path's session has
        yield conn
    except sqlite3.Error as exc:
        raise LiteUnsupported(f"sqlite3: {exc}") from None
    finally:
        conn.close()


def schema_revision(conn: sqlite3.Connection) -> str | None:
    """The Alembic revision the database is at, or None without a schema (storage.db.Database.current_revision)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone() is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else row[0]


def has_secrets(conn: sqlite3.Connection) -> bool:
    """Whether any encrypted value is stored: the query storage.db.Database.has_secrets makes on open, so a
    table it cannot read fails here too."""
    for table, (_pk, columns) in ENCRYPTED_COLUMNS.items():
        cond = " OR ".join(f"{c} IS NOT NULL" for c in columns)
        if conn.execute(f"SELECT 1 FROM {table} WHERE {cond} LIMIT 1").fetchone():
            return True
    return False


def key_check_value(conn: sqlite3.Connection) -> bytes | None:
    """The sealed key check value; LiteUnsupported when the row is missing (opening writes it then)."""
    row = conn.execute("SELECT value_enc FROM vault_item WHERE name = ?", (KEY_CHECK_NAME,)).fetchone()
    if row is None:
        raise LiteUnsupported("no key check value yet")
    if row[0] is not None and not isinstance(row[0], bytes):
        raise LiteUnsupported("key check value is not a blob")
    return row[0]


def _ints(rows: Iterable[tuple[object, ...]]) -> list[int]:
    out = []
    for (value,) in rows:
        if not isinstance(value, int):
            raise LiteUnsupported("an id is not an integer")
        out.append(value)
    return out


def _in(ids: Iterable[int]) -> tuple[str, list[int]]:
    values = sorted(ids)
    return ",".join("?" * len(values)), values


def node_ids_below(conn: sqlite3.Connection, node_ids: Iterable[int]) -> set[int]:
    """The given nodes and every node below them (storage.inventory.node_ids_below: the same LIKE patterns)."""
    wanted = set(node_ids)
    if not wanted:
        return set()
    marks, values = _in(wanted)
    paths = [p for (p,) in conn.execute(f"SELECT path FROM node WHERE id IN ({marks})", values)]
    result = set(wanted)
    for p in paths:
        if not isinstance(p, str):
            raise LiteUnsupported("a node path is not text")
        prefix = likes.below_prefix(p)
        result.update(_ints(conn.execute("SELECT id FROM node WHERE path LIKE ? ESCAPE ? AND substr(path, 1, ?) = ?",
                                         (likes.below(p), likes.ESCAPE, len(prefix), prefix))))
    return result


def scope_node_ids(conn: sqlite3.Connection, operator: str) -> Scope:
    """Ids of the nodes in operator's scope, subtrees expanded, or None: no limit (storage.scopes.scope_node_ids)."""
    top = _ints(conn.execute("SELECT operator_scope.node_id FROM operator_scope JOIN operator "
                             "ON operator.id = operator_scope.operator_id WHERE operator.name = ?", (operator,)))
    return frozenset(node_ids_below(conn, top)) if top else None


_ASSET_COLUMNS = ('id, name, address, port, platform, active, comment, "database", tls, ca_file, connect_timeout, '
                  "command_timeout, gateway_asset_id")
_TEXT = (str,)
_OPTIONAL_FLOAT = (float, type(None))
_OPTIONAL_INT = (int, type(None))
# The type each column of _ASSET_COLUMNS has as the ORM reads it; anything else is left to the ORM path.
_ASSET_TYPES = ((int,), _TEXT, _TEXT, (int,), _TEXT, (int,), _TEXT, _TEXT, _TEXT, _TEXT, _OPTIONAL_FLOAT,
                _OPTIONAL_FLOAT, _OPTIONAL_INT)


def list_assets(conn: sqlite3.Connection, *, node: str | None = None, scope: Scope = None) -> list[AssetInfo]:
    """Assets sorted by name, only those under node (recursively) and in scope when given: what
    storage.inventory.list_assets returns for the same arguments. A node that does not exist or is no path:
    LiteUnsupported (the ORM path words that refusal)."""
    where: list[str] = []
    params: list[object] = []
    if scope is not None:
        marks, values = _in(scope)
        where.append(f"id IN (SELECT asset_id FROM asset_node WHERE node_id IN ({marks}))")
        params += values
    if node:
        try:
            path = normalize_node_path(node)
        except ValueError:
            raise LiteUnsupported("not a node path") from None
        root = conn.execute("SELECT id FROM node WHERE path = ?", (path,)).fetchone()
        if root is None:
            raise LiteUnsupported("no such node")
        marks, values = _in(node_ids_below(conn, _ints([root])))
        where.append(f"id IN (SELECT asset_id FROM asset_node WHERE node_id IN ({marks}))")
        params += values
    sql = f"SELECT {_ASSET_COLUMNS} FROM asset"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY name", params).fetchall()
    return [_asset_info(conn, row) for row in rows]


def _asset_info(conn: sqlite3.Connection, row: tuple[Any, ...]) -> AssetInfo:
    if any(not isinstance(value, types) for value, types in zip(row, _ASSET_TYPES, strict=True)):
        raise LiteUnsupported("an asset column holds a value of another type")
    (asset_id, name, address, port, platform, active, comment, database, tls, ca_file, connect_timeout,
     command_timeout, gateway_id) = row
    nodes = conn.execute("SELECT node.path FROM node JOIN asset_node ON asset_node.node_id = node.id "
                         "WHERE asset_node.asset_id = ? ORDER BY node.path", (asset_id,)).fetchall()
    keys = conn.execute("SELECT key_type, key_base64, fingerprint, source FROM host_key WHERE asset_id = ? "
                        "ORDER BY id", (asset_id,)).fetchall()
    if any(not isinstance(v, str) for r in [*nodes, *keys] for v in r):
        raise LiteUnsupported("a node path or host key holds a value of another type")
    gateway = ""
    if gateway_id is not None:
        found = conn.execute("SELECT name FROM asset WHERE id = ?", (gateway_id,)).fetchone()
        gateway = found[0] if found is not None and found[0] else ""
    return AssetInfo(
        id=asset_id, name=name, address=address, port=port, platform=platform, active=bool(active), comment=comment,
        nodes=tuple(p for (p,) in nodes), host_keys=tuple(HostKeyInfo(*k) for k in keys),
        database=database, tls=tls, ca_file=ca_file, connect_timeout=connect_timeout, command_timeout=command_timeout,
        gateway_id=gateway_id, gateway=gateway,
    )
