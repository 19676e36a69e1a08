"""Repository for the asset inventory: nodes, assets, accounts, secret history and pinned host keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage import likes
from storage.db import Database
from storage.tables import Account, AccountSecretHistory, Asset, AssetNode, HostKey, Node, utcnow
from storage.types import AccountInfo, AccountSecrets, AssetInfo, HostKeyInfo, NodeInfo, fingerprint_sha256


class NotFound(LookupError):
    """A named object does not exist."""


def normalize_node_path(path: str) -> str:
    """'/prod//db/' -> '/prod/db'; raises ValueError for an empty or root-only path."""
    parts = [p.strip() for p in path.strip().split("/") if p.strip()]
    if not parts:
        raise ValueError(f"node path {path!r} is empty")
    return "/" + "/".join(parts)


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
        result.update(session.exec(select(Node.id).where(col(Node.path).like(likes.below(p), escape=likes.ESCAPE))).all())
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


def asset_counts_by_node(db: Database) -> dict[str, int]:
    """Number of assets directly in each node path."""
    with db.read() as s:
        rows = s.exec(
            select(Node.path, func.count(AssetNode.asset_id)).join(AssetNode, AssetNode.node_id == Node.id).group_by(Node.path)
        ).all()
    return {p: n for p, n in rows}


# -- assets ----------------------------------------------------------------------------------------
def _asset_info(session: Session, asset: Asset) -> AssetInfo:
    nodes = session.exec(
        select(Node.path).join(AssetNode, AssetNode.node_id == Node.id).where(AssetNode.asset_id == asset.id).order_by(Node.path)
    ).all()
    keys = session.exec(select(HostKey).where(HostKey.asset_id == asset.id).order_by(HostKey.id)).all()
    return AssetInfo(
        id=asset.id, name=asset.name, address=asset.address, port=asset.port, platform=asset.platform,
        active=asset.active, comment=asset.comment, nodes=tuple(nodes),
        host_keys=tuple(HostKeyInfo(k.key_type, k.key_base64, k.fingerprint, k.source) for k in keys),
        database=asset.database, tls=asset.tls, ca_file=asset.ca_file, connect_timeout=asset.connect_timeout,
        command_timeout=asset.command_timeout, gateway_id=asset.gateway_asset_id,
        gateway=(session.exec(select(Asset.name).where(Asset.id == asset.gateway_asset_id)).first() or "")
        if asset.gateway_asset_id is not None else "",
    )


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
                scope: Scope = None) -> list[AssetInfo]:
    """Assets sorted by name; optionally only those under a node (recursively), matching search, or in scope."""
    with db.read() as s:
        stmt = scoped(select(Asset).order_by(Asset.name), Asset.id, scope)
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
        return [_asset_info(s, a) for a in s.exec(stmt).all()]


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
        raise NotFound(f"{username!r} on {asset_name!r} has a password and a key account; name the secret type")
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
    """Make secret the account's current one; the previous secret goes to its history first."""
    when = when or utcnow()
    if acc.secret_enc is not None:
        hist = AccountSecretHistory(account_id=acc.id, version=acc.version, valid_from=acc.last_changed_at,
                                    replaced_at=when, record_id=record_id)
        session.add(hist)
        session.flush()
        db.seal(hist, "secret_enc", db.unseal(acc, "secret_enc"))
        db.seal(hist, "passphrase_enc", db.unseal(acc, "passphrase_enc"))
    # The version is part of what the secret is sealed to: bump it first, so the old ciphertext cannot return.
    acc.version += 1
    db.seal(acc, "secret_enc", secret)
    db.seal(acc, "passphrase_enc", passphrase)
    acc.last_changed_at = when
    session.add(acc)


def secret_history(db: Database, account_id: int) -> list[tuple[int, datetime, str | None]]:
    """(version, replaced_at, secret) of each earlier secret, newest first. Decrypts: reveal only."""
    with db.read() as s:
        rows = s.exec(select(AccountSecretHistory).where(AccountSecretHistory.account_id == account_id)
                      .order_by(col(AccountSecretHistory.version).desc())).all()
        return [(h.version, h.replaced_at, db.unseal(h, "secret_enc")) for h in rows]


def upsert_account(
    db: Database, session: Session, asset: Asset, username: str, *, secret_type: str = "password",
    secret: str | None = None, passphrase: str | None = None, become: str | None = None,
    privileged: bool | None = None, can_change: bool | None = None,
) -> tuple[Account, str]:
    """Create or update an account; a changed secret keeps the old one in history. Returns row and outcome."""
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
    for h in session.exec(select(AccountSecretHistory).where(AccountSecretHistory.account_id == acc.id)).all():
        session.delete(h)
    session.delete(acc)


def remove_account(db: Database, asset_name: str, username: str, secret_type: str | None = None) -> None:
    """Delete an account and its secret history."""
    with db.write() as s:
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
