"""Repository for the asset inventory: nodes, assets, accounts, secret history and pinned host keys."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Table, any_, bindparam, delete, func, text, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from storage import likes
from storage.db import Database
from storage.hotsql import HotStatement
from storage.errors import AmbiguousAccount, NotFound  # NotFound re-exported for storage's other modules
from storage.schema import normalize_node_path as normalize_node_path  # shared with storage/lite.py
from storage.tables import Account, AccountSecretHistory, Asset, AssetNode, HostKey, Node, utcnow
from storage.types import AccountInfo, AccountSecrets, AssetInfo, HostKeyInfo, NodeInfo, fingerprint_sha256


_T = TypeVar("_T")


# -- nodes -----------------------------------------------------------------------------------------
def ensure_node(session: Session, path: str) -> tuple[Node, int]:
    """Return the node at path, creating it and missing parents; also how many were created."""
    path = normalize_node_path(path)
    created = 0
    parent: Node | None = None
    so_far = ""
    for name in path.strip("/").split("/"):
        so_far += "/" + name
        node = session.exec(select(Node).where(Node.path == so_far)).first()
        if node is None:
            node = Node(path=so_far, name=name, parent_id=parent.id if parent else None)
            session.add(node)
            session.flush()
            created += 1
        parent = node
    assert parent is not None
    return parent, created


def node_ids_below(session: Session, node_ids: Iterable[int]) -> set[int]:
    """The given nodes and every node below them."""
    wanted = set(node_ids)
    if not wanted:
        return set()
    paths = session.exec(select(Node.path).where(col(Node.id).in_(wanted))).all()
    result = set(wanted)
    for p in paths:
        prefix = likes.below_prefix(p)
        result.update(session.exec(select(Node.id).where(col(Node.path).like(likes.below(p), escape=likes.ESCAPE),
                                                          func.substr(Node.path, 1, len(prefix)) == prefix)).all())
    return result


# An operator's scope, as storage queries take it: the ids of the nodes they may see (subtrees already
# expanded), or None for no limit. core.scopes builds it from the acting operator.
Scope = frozenset[int] | None


def in_scope(asset_id_column, scope: frozenset[int]):  # type: ignore[no-untyped-def]
    """A where-clause: the asset id in asset_id_column lies in a node of scope (one SQL sub-select)."""
    return col(asset_id_column).in_(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(scope)))


def scoped(stmt, asset_id_column, scope: Scope):  # type: ignore[no-untyped-def]
    """stmt limited to the assets of scope (unchanged when scope is None)."""
    return stmt if scope is None else stmt.where(in_scope(asset_id_column, scope))


def list_nodes(db: Database) -> list[NodeInfo]:
    """All nodes, sorted by path."""
    with db.read() as s:
        return [NodeInfo(n.id, n.path, n.name, n.parent_id) for n in s.exec(select(Node).order_by(Node.path)).all()]


def asset_counts_by_node(db: Database, *, scope: Scope = None) -> dict[str, int]:
    """Number of assets directly in each node path (only assets in scope, when given)."""
    with db.read() as s:
        rows = s.exec(scoped(
            select(Node.path, func.count(AssetNode.asset_id)).join(AssetNode, AssetNode.node_id == Node.id),
            AssetNode.asset_id, scope).group_by(Node.path)
        ).all()
    return {p: n for p, n in rows}


# -- assets ----------------------------------------------------------------------------------------
def _asset_info(session: Session, asset: Asset) -> AssetInfo:
    return _asset_infos(session, [asset])[0]


def _asset_infos(session: Session, assets: Sequence[Asset]) -> list[AssetInfo]:
    """AssetInfo of each asset, in order: nodes, host keys and gateway names read for all of them at once (three
    queries per batch of assets, not three per asset: a page of the Inventory held a thread worker's GIL 60-75 ms)."""
    nodes: dict[int, list[str]] = {}
    keys: dict[int, list[HostKey]] = {}
    gateways: dict[int, str] = {}
    for batch in _batches(assets):
        ids = [a.id for a in batch]
        for asset_id, path in session.exec(select(AssetNode.asset_id, Node.path).join(Node, AssetNode.node_id == Node.id)
                                           .where(col(AssetNode.asset_id).in_(ids)).order_by(Node.path)).all():
            nodes.setdefault(asset_id, []).append(path)
        for key in session.exec(select(HostKey).where(col(HostKey.asset_id).in_(ids)).order_by(HostKey.id)).all():
            keys.setdefault(key.asset_id, []).append(key)
        wanted = {a.gateway_asset_id for a in batch if a.gateway_asset_id is not None}
        if wanted:
            gateways.update(session.exec(select(Asset.id, Asset.name).where(col(Asset.id).in_(wanted))).all())
    return [AssetInfo(
        id=a.id, name=a.name, address=a.address, port=a.port, platform=a.platform,
        active=a.active, comment=a.comment, nodes=tuple(nodes.get(a.id, ())),
        host_keys=tuple(HostKeyInfo(k.key_type, k.key_base64, k.fingerprint, k.source) for k in keys.get(a.id, ())),
        database=a.database, tls=a.tls, ca_file=a.ca_file, connect_timeout=a.connect_timeout,
        command_timeout=a.command_timeout, gateway_id=a.gateway_asset_id,
        gateway=gateways.get(a.gateway_asset_id, "") if a.gateway_asset_id is not None else "",
    ) for a in assets]


def get_asset_row(session: Session, name: str) -> Asset:
    """The asset row named name, or NotFound."""
    asset = session.exec(select(Asset).where(Asset.name == name)).first()
    if asset is None:
        raise NotFound(f"no asset named {name!r}")
    return asset


def get_asset(db: Database, name: str) -> AssetInfo:
    """One asset by name."""
    with db.read() as s:
        return _asset_info(s, get_asset_row(s, name))


def get_asset_by_id(db: Database, asset_id: int) -> AssetInfo:
    """One asset by id."""
    with db.read() as s:
        asset = s.get(Asset, asset_id)
        if asset is None:
            raise NotFound(f"no asset with id {asset_id}")
        return _asset_info(s, asset)


def list_assets(db: Database, *, node: str | None = None, search: str = "", offset: int = 0, limit: int | None = None,
                scope: Scope = None, drift: bool = False) -> list[AssetInfo]:
    """Assets sorted by name; optionally only those under a node (recursively), matching search, in scope, or
    (drift) holding an account whose newest heartbeat is not ok."""
    with db.read() as s:
        stmt = scoped(select(Asset).order_by(Asset.name), Asset.id, scope)
        if drift:
            from storage.queries import drifted_assets_subquery

            stmt = stmt.where(col(Asset.id).in_(drifted_assets_subquery()))
        if node:
            root = s.exec(select(Node).where(Node.path == normalize_node_path(node))).first()
            if root is None:
                raise NotFound(f"no node {node!r}")
            ids = node_ids_below(s, [root.id])
            stmt = stmt.where(col(Asset.id).in_(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(ids))))
        if search:
            like, esc = likes.contains(search), likes.ESCAPE
            stmt = stmt.where(col(Asset.name).like(like, escape=esc) | col(Asset.address).like(like, escape=esc))
        stmt = stmt.offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return _asset_infos(s, s.exec(stmt).all())


def upsert_asset(
    session: Session, name: str, *, address: str, port: int = 22, platform: str = "linux",
    nodes: Iterable[str] = (), active: bool = True, comment: str | None = None,
    options: dict[str, object] | None = None,
) -> tuple[Asset, str]:
    """Create or update an asset; returns the row and 'created', 'updated' or 'unchanged'.

    options: database connection options (database, tls, ca_file, connect_timeout, command_timeout), already
    checked by core.drivers.dbconn.check_options; None leaves an existing asset's options as they are.
    """
    asset = session.exec(select(Asset).where(Asset.name == name)).first()
    if options and "gateway" in options:
        options = dict(options)
        gw_name = str(options.pop("gateway") or "")
        gw = session.exec(select(Asset).where(Asset.name == gw_name)).first() if gw_name else None
        if gw_name and gw is None:
            raise NotFound(f"gateway: no asset named {gw_name!r}")
        if gw is not None and gw_name == name:
            raise NotFound(f"gateway: asset {name!r} cannot be its own gateway")
        options["gateway_asset_id"] = gw.id if gw is not None else None
    outcome = "unchanged"
    if asset is None:
        asset = Asset(name=name, address=address, port=port, platform=platform, active=active, comment=comment or "",
                      **(options or {}))
        session.add(asset)
        session.flush()
        outcome = "created"
    else:
        wanted = {"address": address, "port": port, "platform": platform, "active": active, **(options or {})}
        if comment is not None:
            wanted["comment"] = comment
        moved = (asset.address, asset.port) != (address, port)
        for key, value in wanted.items():
            if getattr(asset, key) != value:
                setattr(asset, key, value)
                outcome = "updated"
        if moved:
            # A key pinned for the old address says nothing about the new one: trust starts over there,
            # so an edited address can never inherit the trust that would send it the asset's secrets.
            for hk in session.exec(select(HostKey).where(HostKey.asset_id == asset.id)).all():
                session.delete(hk)
        if outcome == "updated":
            asset.updated_at = utcnow()
    have = set(session.exec(select(AssetNode.node_id).where(AssetNode.asset_id == asset.id)).all())
    for path in nodes:
        node, _ = ensure_node(session, path)
        if node.id not in have:
            session.add(AssetNode(asset_id=asset.id, node_id=node.id))
            have.add(node.id)
            if outcome == "unchanged":
                outcome = "updated"
    session.flush()
    return asset, outcome


def remove_asset(db: Database, name: str) -> None:
    """Delete an asset with its accounts and keys (records keep their names)."""
    with db.write() as s:
        remove_asset_in(s, name)


def remove_asset_in(s: Session, name: str) -> None:
    """remove_asset inside an open write session (the caller's audit event commits with it)."""
    asset = get_asset_row(s, name)
    for acc in s.exec(select(Account).where(Account.asset_id == asset.id)).all():
        _delete_account(s, acc)
    for row in s.exec(select(HostKey).where(HostKey.asset_id == asset.id)).all():
        s.delete(row)
    for row in s.exec(select(AssetNode).where(AssetNode.asset_id == asset.id)).all():
        s.delete(row)
    for row in s.exec(select(Asset).where(Asset.gateway_asset_id == asset.id)).all():
        row.gateway_asset_id = None  # its databases say "gateway removed" instead of pointing at a stranger
    # Flush the link rows first: deleting the asset would cascade them away under the ORM's feet.
    s.flush()
    s.delete(asset)


def set_asset_active(db: Database, name: str, active: bool) -> None:
    """Mark an asset active or inactive."""
    with db.write() as s:
        asset = get_asset_row(s, name)
        asset.active = active
        asset.updated_at = utcnow()


# -- host keys -------------------------------------------------------------------------------------
def pin_host_key(session: Session, asset: Asset, key_type: str, key_base64: str, source: str) -> bool:
    """Pin a host key on an asset; returns False when it was already pinned."""
    exists = session.exec(
        select(HostKey).where(HostKey.asset_id == asset.id, HostKey.key_type == key_type, HostKey.key_base64 == key_base64)
    ).first()
    if exists:
        return False
    session.add(HostKey(asset_id=asset.id, key_type=key_type, key_base64=key_base64,
                        fingerprint=fingerprint_sha256(key_base64), source=source))
    session.flush()
    return True


def replace_host_keys(db: Database, asset_name: str, keys: list[tuple[str, str]], source: str) -> None:
    """Replace every pinned key of an asset with keys (an explicit re-trust)."""
    with db.write() as s:
        replace_host_keys_in(s, asset_name, keys, source)


def replace_host_keys_in(s: Session, asset_name: str, keys: list[tuple[str, str]], source: str) -> None:
    """replace_host_keys inside an open write session."""
    asset = get_asset_row(s, asset_name)
    for row in s.exec(select(HostKey).where(HostKey.asset_id == asset.id)).all():
        s.delete(row)
    s.flush()
    for key_type, b64 in keys:
        pin_host_key(s, asset, key_type, b64, source)


# -- accounts --------------------------------------------------------------------------------------
def _account_info(acc: Account, asset_name: str) -> AccountInfo:
    return AccountInfo(
        id=acc.id, asset_id=acc.asset_id, asset_name=asset_name, username=acc.username, secret_type=acc.secret_type,
        privileged=acc.privileged, can_change=acc.can_change, version=acc.version, last_changed_at=acc.last_changed_at,
        last_status=acc.last_status, has_secret=acc.secret_enc is not None,
        has_become=acc.become_secret_enc is not None,
    )


def list_accounts(db: Database, *, asset: str | None = None, offset: int = 0, limit: int | None = None,
                  scope: Scope = None) -> list[AccountInfo]:
    """Accounts sorted by asset then username (only on assets in scope, when given)."""
    with db.read() as s:
        stmt = select(Account, Asset.name).join(Asset, Asset.id == Account.asset_id).order_by(Asset.name, Account.username, Account.secret_type)
        stmt = scoped(stmt, Account.asset_id, scope)
        if asset:
            stmt = stmt.where(Asset.id == get_asset_row(s, asset).id)
        stmt = stmt.offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_account_info(a, n) for a, n in s.exec(stmt).all()]


def get_account_row(session: Session, asset_name: str, username: str, secret_type: str | None = None) -> Account:
    """The account row, or NotFound (ambiguous when a user has both a password and a key and no type is given)."""
    asset = get_asset_row(session, asset_name)
    stmt = select(Account).where(Account.asset_id == asset.id, Account.username == username)
    if secret_type:
        stmt = stmt.where(Account.secret_type == secret_type)
    rows = session.exec(stmt).all()
    if not rows:
        raise NotFound(f"no account {username!r} on asset {asset_name!r}")
    if len(rows) > 1:
        raise AmbiguousAccount(f"{username!r} on {asset_name!r} has a password and a key account; name the secret type")
    return rows[0]


def account_secrets(db: Database, account_id: int) -> AccountSecrets:
    """Decrypt one account's secrets (for drivers and the reveal view only)."""
    with db.read() as s:
        acc = s.get(Account, account_id)
        if acc is None:
            raise NotFound(f"no account with id {account_id}")
        return AccountSecrets(acc.id, db.unseal(acc, "secret_enc"), db.unseal(acc, "passphrase_enc"), db.unseal(acc, "become_secret_enc"))


def set_account_secret(
    db: Database, session: Session, acc: Account, secret: str | None, passphrase: str | None = None,
    *, when: datetime | None = None, record_id: int | None = None,
) -> None:
    """Make secret the account's current one; the previous secret goes to its history first (replace_secret)."""
    current = {c: getattr(acc, c) for c in ("id", "asset_id", "username", "secret_type", "version", "secret_enc",
                                            "passphrase_enc", "last_changed_at")}
    for column, value in replace_secret(db, session.connection(), current, secret, passphrase,
                                        when=when or utcnow(), record_id=record_id).items():
        setattr(acc, column, value)
    session.add(acc)


def replace_secret(db: Database, conn: Connection, acc: Mapping[str, Any], secret: str | None,
                   passphrase: str | None, *, when: datetime, record_id: int | None) -> dict[str, Any]:
    """The one rule for a new current secret, for account edits, imports, drift and a rotation's settle alike:
    the current secret (acc: the account's column values) goes to a history row, and the returned column
    values make secret the current one. The version is bumped first, since the secret is sealed to it: the
    old ciphertext cannot come back as current. The caller writes the returned values to the account row."""
    history = _history_statements()
    if acc["secret_enc"] is not None:
        hid = history.insert.execute(conn, {"h_account": acc["id"], "h_version": acc["version"],
                                            "h_from": acc["last_changed_at"], "h_replaced": when,
                                            "h_record": record_id}).scalar()
        row = {"id": hid, "account_id": acc["id"], "version": acc["version"]}
        history.seal.execute(conn, {
            "b_id": hid,
            "b_secret": db.seal_value("account_secret_history", row, "secret_enc",
                                      db.unseal_value("account", acc, "secret_enc")),
            "b_phrase": db.seal_value("account_secret_history", row, "passphrase_enc",
                                      db.unseal_value("account", acc, "passphrase_enc"))})
    after = dict(acc, version=acc["version"] + 1)
    return {"version": after["version"], "secret_enc": db.seal_value("account", after, "secret_enc", secret),
            "passphrase_enc": db.seal_value("account", after, "passphrase_enc", passphrase), "last_changed_at": when}


@dataclass(frozen=True)
class _HistoryStatements:
    insert: HotStatement
    seal: HotStatement


@functools.cache
def _history_statements() -> _HistoryStatements:
    history, b = _table(AccountSecretHistory), bindparam
    return _HistoryStatements(
        insert=HotStatement(sa_insert(history).values(
            account_id=b("h_account"), version=b("h_version"), valid_from=b("h_from"), replaced_at=b("h_replaced"),
            record_id=b("h_record")).returning(history.c.id)),
        seal=HotStatement(update(history).where(history.c.id == b("b_id")).values(
            secret_enc=b("b_secret"), passphrase_enc=b("b_phrase"))),
    )


def secret_history(db: Database, account_id: int) -> list[tuple[int, datetime, str | None]]:
    """(version, replaced_at, secret) of each earlier secret, newest first. Decrypts: reveal only."""
    with db.read() as s:
        rows = s.exec(select(AccountSecretHistory).where(AccountSecretHistory.account_id == account_id)
                      .order_by(col(AccountSecretHistory.version).desc())).all()
        return [(h.version, h.replaced_at, db.unseal(h, "secret_enc")) for h in rows]


def upsert_account(
    db: Database, session: Session, asset: Asset, username: str, *, secret_type: str = "password",
    secret: str | None = None, passphrase: str | None = None, become: str | None = None,
    privileged: bool | None = None, can_change: bool | None = None, clear_become: bool = False,
) -> tuple[Account, str]:
    """Create or update an account; a changed secret keeps the old one in history; clear_become drops the become
    (sudo) password. Returns row and outcome."""
    acc = session.exec(
        select(Account).where(Account.asset_id == asset.id, Account.username == username, Account.secret_type == secret_type)
    ).first()
    outcome = "unchanged"
    if acc is None:
        acc = Account(asset_id=asset.id, username=username, secret_type=secret_type,
                      privileged=bool(privileged), can_change=True if can_change is None else can_change)
        session.add(acc)
        session.flush()
        outcome = "created"
        if secret is not None:
            set_account_secret(db, session, acc, secret, passphrase)
    else:
        if privileged is not None and acc.privileged != privileged:
            acc.privileged = privileged
            outcome = "updated"
        if can_change is not None and acc.can_change != can_change:
            acc.can_change = can_change
            outcome = "updated"
        if secret is not None and (db.unseal(acc, "secret_enc") != secret or db.unseal(acc, "passphrase_enc") != passphrase):
            set_account_secret(db, session, acc, secret, passphrase)
            outcome = "updated"
    if become is not None and db.unseal(acc, "become_secret_enc") != become:
        db.seal(acc, "become_secret_enc", become)
        if outcome == "unchanged":
            outcome = "updated"
    elif clear_become and acc.become_secret_enc is not None:
        acc.become_secret_enc = None
        if outcome == "unchanged":
            outcome = "updated"
    session.add(acc)
    session.flush()
    return acc, outcome


def rotated_conflict(db: Database, session: Session, asset: Asset, username: str, secret_type: str,
                     secret: str | None, passphrase: str | None) -> str | None:
    """When a keyturn rotation set the account's current secret and `secret` differs from it: that time, else None."""
    if secret is None:
        return None
    acc = session.exec(select(Account).where(Account.asset_id == asset.id, Account.username == username,
                                             Account.secret_type == secret_type)).first()
    if acc is None or acc.version == 0:
        return None
    if db.unseal(acc, "secret_enc") == secret and db.unseal(acc, "passphrase_enc") == passphrase:
        return None
    # The history row of the secret a rotation replaced carries that rotation's record id.
    rotated = session.exec(select(AccountSecretHistory.replaced_at).where(
        AccountSecretHistory.account_id == acc.id, AccountSecretHistory.version == acc.version - 1,
        col(AccountSecretHistory.record_id).is_not(None))).first()
    if rotated is None:
        return None
    return rotated.strftime("%Y-%m-%d %H:%M:%SZ")


def _delete_account(session: Session, acc: Account) -> None:
    # One statement, run now: history rows loaded as objects were flushed after the account, whose ON DELETE
    # CASCADE had already removed them ("expected to delete 1 row(s); 0 were matched").
    session.execute(delete(AccountSecretHistory).where(col(AccountSecretHistory.account_id) == acc.id))
    session.delete(acc)


def remove_account(db: Database, asset_name: str, username: str, secret_type: str | None = None) -> None:
    """Delete an account and its secret history."""
    with db.write() as s:
        remove_account_in(s, asset_name, username, secret_type)


def remove_account_in(s: Session, asset_name: str, username: str, secret_type: str | None = None) -> None:
    """remove_account inside an open write session."""
    _delete_account(s, get_account_row(s, asset_name, username, secret_type))


def privileged_account(db: Database, asset_id: int) -> AccountInfo | None:
    """The asset's privileged account (password accounts first, then keys), or None."""
    with db.read() as s:
        rows = s.exec(select(Account, Asset.name).join(Asset, Asset.id == Account.asset_id)
                      .where(Account.asset_id == asset_id, Account.privileged == True)  # noqa: E712
                      .order_by(Account.id)).all()
        return _account_info(*rows[0]) if rows else None


def counts(db: Database) -> dict[str, int]:
    """Numbers of nodes, assets and accounts."""
    with db.read() as s:
        return {
            "nodes": s.exec(select(func.count()).select_from(Node)).one(),
            "assets": s.exec(select(func.count()).select_from(Asset)).one(),
            "accounts": s.exec(select(func.count()).select_from(Account)).one(),
        }


# -- bulk import -----------------------------------------------------------------------------------
# An inventory import writes tens of thousands of rows in one transaction. These functions take a batch
# (up to BULK_BATCH assets or accounts at a time) and touch the database with a few statements per batch:
# one SELECT of what exists, one INSERT and one UPDATE executed for many rows. Ids of new rows are taken
# before their INSERT (_new_ids), because a secret is sealed to its row id and goes into that same INSERT.
# 2,000: each batch costs a few round trips to the database, which a busy machine makes slow (PostgreSQL:
# 100,000 hosts took 11 s in batches of 500, 8 s in batches of 2,000); memory per batch stays a few MB.
# A batch's lookup is one IN list of up to BULK_BATCH values (SQLite 3.32+ takes 32,766).
BULK_BATCH = 2000


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which showed in a large import.
@dataclass(slots=True)
class AssetItem:
    """An asset as an import wants it; active or comment None keeps what the database has."""

    name: str
    address: str
    port: int
    platform: str
    nodes: tuple[str, ...] = ()
    active: bool | None = None
    comment: str | None = None
    # Database connection options as core.drivers.dbconn.check_options returns them ("gateway": an asset's
    # name); None keeps what the database has, as in upsert_asset.
    options: dict[str, object] | None = None


@dataclass(slots=True)
class AccountItem:
    """An account as an import wants it, on the asset with asset_id; None keeps what the database has."""

    asset_id: int
    username: str
    secret_type: str = "password"
    secret: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    become: str | None = field(default=None, repr=False)
    privileged: bool | None = None
    can_change: bool | None = None


@dataclass(slots=True)
class AccountOutcome:
    """What bulk_upsert_accounts did with one item: created, updated, unchanged or conflict.

    conflict: the account holds a secret a keyturn rotation set (at rotated_at) and the item's secret differs;
    nothing of that account was written.
    """

    outcome: str
    rotated_at: datetime | None = None


def _table(model: type[SQLModel]) -> Table:
    """The Core table of a SQLModel table class (what the bulk statements are built on)."""
    return model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass; not in its stubs


def _new_ids(session: Session, table: str, n: int) -> list[int]:
    """n unused primary keys of table, taken before the rows are inserted.

    SQLite: the ids after the highest one, which is what SQLite itself would give; safe because every
    db.write() holds SQLite's only write lock (BEGIN IMMEDIATE) until it commits. PostgreSQL: values of the
    column's own sequence, which no other transaction can be given.
    """
    if n <= 0:
        return []
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        top = conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
        return list(range(top + 1, top + 1 + n))
    if conn.dialect.name == "postgresql":
        return list(conn.execute(text("SELECT array_agg(nextval(pg_get_serial_sequence(:t, 'id'))) "
                                      "FROM generate_series(1, :n)"), {"t": table, "n": n}).scalar_one())
    raise NotImplementedError(f"bulk import does not know how to reserve ids on {conn.dialect.name}")


def _write_many(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str | None = None) -> None:
    """INSERT rows into table, or with key UPDATE the rows whose key column matches: one executemany.

    Every row has the same columns. SQLAlchemy's own executemany runs each value through its column type's
    bind processor, a third of an import's time for values that hardly vary (one timestamp, True/False):
    here each distinct value of a column is processed once, by that same processor, and the driver's
    executemany gets the results, so the database holds exactly what the ORM would have written.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    columns = list(rows[0])
    processors: list[tuple[int, Callable[[Any], Any], dict[Any, Any]]] = []
    for i, name in enumerate(columns):
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if proc is not None:
            processors.append((i, proc, {}))  # the columns processed (booleans, times) hold hashable values
    pick = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    params: list[tuple[Any, ...]] = []
    for row in rows:
        values: tuple[Any, ...] = pick(row)
        if processors:
            fixed = list(values)
            for i, process, memo in processors:
                value = fixed[i]
                if value is not None:
                    if value not in memo:
                        memo[value] = process(value)
                    fixed[i] = memo[value]
            values = tuple(fixed)
        params.append(values)
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"
    if key is None:
        head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
        one = f"({', '.join(mark for _ in columns)})"
        if dialect.name == "postgresql":
            # psycopg's executemany pays a round of its pipeline per row; COPY streams all of them at once.
            copy_sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
            driver = conn.connection.driver_connection
            assert driver is not None  # a connection inside a transaction has its driver's connection
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for values in params:
                    copy.write_row(values)
            return
        sql = head + one
    else:
        # The key goes last: it is the WHERE clause's parameter.
        order = [c for c in columns if c != key] + [key]
        where = {c: i for i, c in enumerate(columns)}
        params = [tuple(p[where[c]] for c in order) for p in params]
        sql = (f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = {mark}' for c in order[:-1])} "
               f"WHERE {quote(key)} = {mark}")
    conn.exec_driver_sql(sql, params)


def _among(session: Session, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """column IN values. On PostgreSQL as `= ANY(array)`: one parameter, where an IN list of hundreds made
    psycopg parse a new statement text each time (a tenth of a large import's time)."""
    if session.connection().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # only here: SQLite commands need not load the dialect

        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _batches(items: Sequence[_T], size: int = BULK_BATCH) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def start_bulk_write(session: Session) -> None:
    """Ready a write transaction for the bulk_* functions; call it before the first of them.

    On PostgreSQL, lookups then go through the indexes: a large import grows its tables by many thousands
    of rows inside this one transaction while the planner's statistics still describe them as they were
    (often empty), and the sequential scans it chose for each batch's lookup made the import quadratic
    (200 s instead of a few for 100,000 hosts). SET LOCAL ends with the transaction.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")


def bulk_ensure_nodes(session: Session, paths: Iterable[str]) -> tuple[dict[str, int], int]:
    """The id of each node path as given (and normalized) and of all their parents, creating the missing ones.

    Also returns how many were created.
    """
    given = {raw: normalize_node_path(raw) for raw in set(paths)}
    wanted: set[str] = set()
    for path in given.values():
        parts = path.strip("/").split("/")
        wanted.update("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
    node = _table(Node)
    ids: dict[str, int] = {}
    for batch in _batches(sorted(wanted)):
        ids.update(session.execute(sa_select(node.c.path, node.c.id).where(_among(session, node.c.path, batch))).all())
    # Parents first, so each new node's parent already has its id (and exists when the child is inserted).
    missing = sorted((p for p in wanted if p not in ids), key=lambda p: (p.count("/"), p))
    rows = []
    for path, new_id in zip(missing, _new_ids(session, "node", len(missing)), strict=True):
        parent, _, name = path.rpartition("/")
        ids[path] = new_id
        rows.append({"id": new_id, "path": path, "name": name, "parent_id": ids[parent] if parent else None})
    _write_many(session, node, rows)
    return {**{p: ids[p] for p in wanted}, **{raw: ids[path] for raw, path in given.items()}}, len(missing)


def bulk_upsert_assets(session: Session, items: Sequence[AssetItem], node_ids: Mapping[str, int], *,
                       when: datetime | None = None) -> list[tuple[int, str]]:
    """Create or update a batch of assets (names unique in the batch); (id, outcome) of each, in order.

    The rules of upsert_asset: an asset moved to another address or port loses its pinned host keys (trust
    starts over there); nodes are only added; a gateway is named by an asset that exists already or comes
    earlier in the import (NotFound otherwise); the outcome is created, updated or unchanged. node_ids maps
    every node path of the items to its id (bulk_ensure_nodes).
    """
    when = when or utcnow()
    asset, link, host_key = _table(Asset), _table(AssetNode), _table(HostKey)
    existing = {r.name: dict(r._mapping) for r in session.execute(
        sa_select(*(asset.c[c] for c in _ASSET_READ)).where(_among(session, asset.c.name, [i.name for i in items])))}
    have: set[tuple[int, int]] = set()
    if existing:
        old_ids = [r["id"] for r in existing.values()]
        have = {(a, n) for a, n in session.execute(
            sa_select(link.c.asset_id, link.c.node_id).where(_among(session, link.c.asset_id, old_ids)))}
    gateway_names = list({str(i.options["gateway"]) for i in items if i.options and i.options.get("gateway")})
    gateways: dict[str, int] = {}
    if gateway_names:
        gateways = {n: i for n, i in session.execute(
            sa_select(asset.c.name, asset.c.id).where(_among(session, asset.c.name, gateway_names)))}
    new_ids = iter(_new_ids(session, "asset", sum(1 for i in items if i.name not in existing)))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    moved: list[int] = []
    links: list[dict[str, int]] = []
    result: list[tuple[int, str]] = []
    for item in items:
        row = existing.get(item.name)
        wanted: dict[str, Any] = {"address": item.address, "port": item.port, "platform": item.platform}
        if item.active is not None:
            wanted["active"] = item.active
        if item.comment is not None:
            wanted["comment"] = item.comment
        if item.options:
            options = dict(item.options)
            if "gateway" in options:
                gateway = str(options.pop("gateway") or "")
                if gateway and gateway not in gateways:
                    raise NotFound(f"gateway: no asset named {gateway!r}")
                if gateway and gateway == item.name:
                    raise NotFound(f"gateway: asset {item.name!r} cannot be its own gateway")
                options["gateway_asset_id"] = gateways[gateway] if gateway else None
            wanted.update(options)
        if row is None:
            asset_id, outcome = next(new_ids), "created"
            inserts.append({**_NEW_ASSET, **wanted, "id": asset_id, "name": item.name, "created_at": when,
                            "updated_at": when})
        else:
            asset_id, outcome = row["id"], "unchanged"
            after = {**row, **wanted}
            if after != row:
                outcome = "updated"
                updates.append({**{c: after[c] for c in _ASSET_READ if c != "name"}, "updated_at": when})
            if (row["address"], row["port"]) != (item.address, item.port):
                # As in upsert_asset: a key pinned for the old address says nothing about the new one.
                moved.append(asset_id)
        gateways[item.name] = asset_id  # a later asset of the import may name this one as its gateway
        for path in item.nodes:
            key = (asset_id, node_ids[path])
            if key not in have:
                have.add(key)
                links.append({"asset_id": key[0], "node_id": key[1]})
                outcome = "updated" if outcome == "unchanged" else outcome
        result.append((asset_id, outcome))
    _write_many(session, asset, inserts)
    _write_many(session, asset, updates, key="id")
    if moved:
        session.execute(delete(host_key).where(host_key.c.asset_id.in_(moved)))
    _write_many(session, link, links)
    return result


def bulk_upsert_accounts(db: Database, session: Session, items: Sequence[AccountItem], *,
                         overwrite_rotated: bool = False, new_assets: Collection[int] = (),
                         when: datetime | None = None) -> list[AccountOutcome]:
    """Create or update a batch of accounts (each (asset, user, type) once in the batch); the outcome of each.

    The rules of upsert_account: a changed secret (or passphrase) sends the current one to the account's
    history and bumps its version; a become secret, privileged and can_change are replaced when given.
    Unless overwrite_rotated, an item whose secret differs from one a keyturn rotation set (DESIGN.md point 7,
    as rotated_conflict) is a conflict and nothing of that account is written. The rows read are locked
    (FOR UPDATE) until the transaction ends, so a rotation settling meanwhile on PostgreSQL waits for it.
    new_assets: ids of assets created in this transaction, which have no accounts to look up yet.
    """
    when = when or utcnow()
    account, history = _table(Account), _table(AccountSecretHistory)
    old_assets = list({i.asset_id for i in items} - set(new_assets))
    existing: dict[tuple[int, str, str], Mapping[Any, Any]] = {}
    if old_assets:
        existing = {(r.asset_id, r.username, r.secret_type): r._mapping for r in session.execute(
            sa_select(*(account.c[c] for c in _ACCOUNT_READ)).where(_among(session, account.c.asset_id, old_assets))
            .order_by(account.c.id).with_for_update())}
    # First pass: what the file changes; secrets are decrypted once, only where the file gives one.
    plans: list[tuple[AccountItem, Mapping[Any, Any] | None, bool, str | None, str | None]] = []
    suspects: list[int] = []
    for item in items:
        row = existing.get((item.asset_id, item.username, item.secret_type))
        old_secret = old_phrase = None
        changed = False
        if row is not None and item.secret is not None:
            old_secret = db.unseal_value("account", row, "secret_enc")
            old_phrase = db.unseal_value("account", row, "passphrase_enc")
            changed = (old_secret, old_phrase) != (item.secret, item.passphrase)
            if changed and not overwrite_rotated and row["version"] != 0:
                suspects.append(row["id"])
        plans.append((item, row, changed, old_secret, old_phrase))
    rotated: dict[int, datetime] = {}
    for batch in _batches(suspects):
        # The history row of the secret a rotation replaced carries that rotation's record id.
        rotated.update(session.execute(
            sa_select(history.c.account_id, history.c.replaced_at).join(account, account.c.id == history.c.account_id)
            .where(_among(session, history.c.account_id, batch), history.c.version == account.c.version - 1,
                   history.c.record_id.is_not(None))).all())
    new_ids = iter(_new_ids(session, "account", sum(1 for _, row, *_ in plans if row is None)))
    history_ids = iter(_new_ids(session, "account_secret_history", sum(
        1 for _, row, changed, *_ in plans
        if changed and row is not None and row["secret_enc"] is not None and row["id"] not in rotated)))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    olds: list[dict[str, Any]] = []
    result: list[AccountOutcome] = []
    for item, row, changed, old_secret, old_phrase in plans:
        if row is None:
            new: dict[str, Any] = {
                "id": next(new_ids), "asset_id": item.asset_id, "username": item.username,
                "secret_type": item.secret_type, "privileged": bool(item.privileged),
                "can_change": True if item.can_change is None else item.can_change,
                "version": 0 if item.secret is None else 1, "last_changed_at": None if item.secret is None else when,
                "last_status": "", "created_at": when, "claimed_by": None,
            }
            for column, value in (("secret_enc", item.secret), ("passphrase_enc", item.passphrase),
                                  ("become_secret_enc", item.become)):
                new[column] = None if value is None else db.seal_value("account", new, column, value)
            inserts.append(new)
            result.append(AccountOutcome("created"))
            continue
        if row["id"] in rotated:
            result.append(AccountOutcome("conflict", rotated[row["id"]]))
            continue
        after = dict(row)
        if item.privileged is not None:
            after["privileged"] = item.privileged
        if item.can_change is not None:
            after["can_change"] = item.can_change
        if changed:
            if row["secret_enc"] is not None:
                old: dict[str, Any] = {"id": next(history_ids), "account_id": row["id"], "version": row["version"],
                                       "valid_from": row["last_changed_at"], "replaced_at": when, "record_id": None}
                old["secret_enc"] = db.seal_value("account_secret_history", old, "secret_enc", old_secret)
                old["passphrase_enc"] = db.seal_value("account_secret_history", old, "passphrase_enc", old_phrase)
                olds.append(old)
            # The version is part of what the secret is sealed to: the old ciphertext cannot come back.
            after["version"] = row["version"] + 1
            after["secret_enc"] = db.seal_value("account", after, "secret_enc", item.secret)
            after["passphrase_enc"] = db.seal_value("account", after, "passphrase_enc", item.passphrase)
            after["last_changed_at"] = when
        if item.become is not None and db.unseal_value("account", row, "become_secret_enc") != item.become:
            after["become_secret_enc"] = db.seal_value("account", after, "become_secret_enc", item.become)
        if after == dict(row):
            result.append(AccountOutcome("unchanged"))
            continue
        updates.append({k: after[k] for k in _ACCOUNT_UPDATED})
        result.append(AccountOutcome("updated"))
    _write_many(session, account, inserts)
    _write_many(session, history, olds)
    _write_many(session, account, updates, key="id")
    return result


# The columns an import reads and compares (not the timestamps it never looks at: reading them was a fifth of a
# large re-import). _ACCOUNT_READ holds every column a sealed value is bound to (storage/tables.py BINDINGS).
_ASSET_READ = ("id", "name", "address", "port", "platform", "active", "comment", "database", "tls", "ca_file",
               "connect_timeout", "command_timeout", "gateway_asset_id")
# A new asset's columns before the import's values: the defaults of storage/tables.py's Asset.
_NEW_ASSET: dict[str, Any] = {"active": True, "comment": "", "database": "", "tls": "", "ca_file": "",
                              "connect_timeout": None, "command_timeout": None, "gateway_asset_id": None}
_ACCOUNT_READ = ("id", "asset_id", "username", "secret_type", "secret_enc", "passphrase_enc", "become_secret_enc",
                 "privileged", "can_change", "version", "last_changed_at")
_ACCOUNT_UPDATED = ("id", "privileged", "can_change", "version", "secret_enc", "passphrase_enc", "become_secret_enc",
                    "last_changed_at")
