"""Inventory use cases: assets (add, edit, remove, trust a host key), accounts (add or re-key, edit, remove), imports,
and the reads the inventory screens and commands show.

Audit actions, the same from every front end: asset.add, asset.edit, asset.remove, asset.trust, account.add,
account.update, account.remove, inventory.import, inventory.import_known_hosts. Each event is written in the
transaction of the change it records (before the change within it), so neither commits without the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core import listings
from core.audit import record_event_in
from core.context import Context
from core.errors import InputError, NotFound
from core.hostkeys import TrustCheck, check_trust, fetch_host_keys, import_known_hosts
from core.names import check_username
from core.values import check_private_key, parse_platform, parse_port
from core.operators import require
from core.scopes import asset_in_scope
from storage import inventory as store
from storage import queries
from storage.types import AccountInfo, AssetInfo, ImportSummary, NodeInfo, fingerprint_sha256

__all__ = ["AccountRemoval", "AssetRemoval", "HostKeyOffer", "account_to_remove", "add_account", "add_asset",
           "asset_counts_by_node", "asset_to_remove", "check_account_step_up", "count_assets", "edit_account",
           "edit_asset", "fetch_offer", "get_asset",
           "import_file", "import_known_hosts_file", "list_accounts", "list_assets", "list_nodes", "parse_node_path", "parse_nodes", "pin_offer",
           "remove_account", "remove_asset"]


@dataclass(frozen=True)
class AssetRemoval:
    """What removing an asset deletes (shown before the confirmation)."""

    name: str
    address: str
    port: int
    accounts: int


@dataclass(frozen=True)
class AccountRemoval:
    """What removing an account deletes (shown before the confirmation)."""

    asset: str
    username: str
    secret_type: str
    version: int


@dataclass(frozen=True)
class HostKeyOffer:
    """The keys a host offers next to the pinned ones; pin_offer pins exactly these."""

    asset: AssetInfo
    offered: tuple[tuple[str, str], ...]
    check: TrustCheck

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        """(key type, SHA256 fingerprint) of each offered key."""
        return [(t, fingerprint_sha256(b)) for t, b in self.offered]


# -- validation ------------------------------------------------------------------------------------
def _name(value: str, field: str, what: str) -> str:
    from core.importer import check_name  # the importer (and yaml) only where a name is checked

    try:
        return check_name(value or "", what)
    except ValueError as exc:
        raise InputError(f"{field}: {exc}", field=field) from None


def _platform(value: str) -> str:
    return parse_platform(value)  # BadValue (an InputError on the platform field) for unknown or rejected ones


def _nodes(paths: Iterable[str]) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(store.normalize_node_path(p))
        except ValueError as exc:
            raise InputError(f"nodes: {exc}", field="nodes") from None
    return out


def parse_node_path(text: str) -> str:
    """'/prod//db/' -> '/prod/db'; InputError (field 'nodes') for an empty or root-only path."""
    return _nodes([text])[0]


def parse_nodes(text: str) -> list[str]:
    """'/prod/web, /dc1' -> normalized node paths (InputError on the nodes field)."""
    return _nodes(p for p in text.split(",") if p.strip())


def _comment(value: str | None) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise InputError("comment: must be one line", field="comment")
    return value


# Fields of an asset that decide where its secrets travel and how: changing one needs a TOTP step-up.
WHERE_FIELDS = ("address", "port", "platform", "tls", "ca_file", "gateway")


def _step_up(ctx: Context, action: str) -> None:
    from core.stepup import require_step_up  # core.mfa (pyotp) only where a change needs a code

    require_step_up(ctx, ctx.mfa, action)


def _moves(current: AssetInfo, changes: dict[str, Any]) -> bool:
    """Whether changes (edit_asset's) touch a WHERE_FIELDS value; an empty TLS mode is 'disable'."""
    def norm(key: str, value: Any) -> Any:
        value = "" if value is None else value
        return "" if key == "tls" and value == "disable" else value

    return any(k in changes and norm(k, changes[k]) != norm(k, getattr(current, k)) for k in WHERE_FIELDS)


# -- reads -----------------------------------------------------------------------------------------
def get_asset(ctx: Context, name: str) -> AssetInfo:
    """One asset (NotFound also outside the acting operator's scope: there it does not exist for them)."""
    asset = store.get_asset(ctx.db, name)
    asset_in_scope(ctx, name)
    return asset


def list_assets(ctx: Context, *, node: str | None = None, search: str = "", offset: int = 0,
                limit: int | None = None, drift: bool = False) -> list[AssetInfo]:
    """Assets in the acting operator's scope, at or below node, matching search (drift: with a drifted account)."""
    return listings.list_assets(ctx, node=node, search=search, offset=offset, limit=limit, drift=drift)


def count_assets(ctx: Context, *, node: str | None = None, search: str = "", drift: bool = False) -> int:
    """How many assets list_assets would page through (in the acting operator's scope)."""
    node_ids = queries.node_subtree_ids(ctx.db, node) if node else None
    return listings.count_assets(ctx, node_ids=node_ids, search=search, drift=drift)


def list_accounts(ctx: Context, *, asset: str | None = None) -> list[AccountInfo]:
    """Accounts (never secrets) in the acting operator's scope, optionally of one asset."""
    return listings.list_accounts(ctx, asset=asset)


def list_nodes(ctx: Context) -> list[NodeInfo]:
    """The node tree, sorted by path."""
    return store.list_nodes(ctx.db)


def asset_counts_by_node(ctx: Context) -> dict[str, int]:
    """Number of assets directly in each node path (in the acting operator's scope)."""
    from core.scopes import scope_filter

    return store.asset_counts_by_node(ctx.db, scope=scope_filter(ctx))


# -- assets ----------------------------------------------------------------------------------------
def add_asset(ctx: Context, name: str, *, address: str, port: int | str | None = None, platform: str = "linux",
              nodes: Iterable[str] = (), active: bool = True, comment: str | None = None, database: str = "",
              tls: str = "", ca_file: str = "", connect_timeout: float | None = None,
              command_timeout: float | None = None, gateway: str | None = None) -> AssetInfo:
    """Add a new asset (InputError on the name field when it exists); audited as asset.add.

    Without a port, the platform's default (22, or the database's). Database options are checked by
    core.drivers.dbconn.check_options (InputError naming database, tls, ca_file, ...)."""
    from core.drivers.dbconn import check_options, default_port

    require(ctx, "edit")
    name = _name(name, "name", "name")
    address = _name(address, "address", "address")
    platform = _platform(platform)
    port = parse_port(port) if port not in (None, "") else default_port(platform)
    paths, comment = _nodes(nodes), _comment(comment)
    options = check_options(platform, database=database or "", tls=tls or "", ca_file=ca_file or "",
                            connect_timeout=connect_timeout, command_timeout=command_timeout, gateway=gateway)
    with ctx.db.write() as s:
        try:
            store.get_asset_row(s, name)
        except NotFound:
            pass
        else:
            raise InputError(f"name: asset {name!r} already exists", field="name")
        record_event_in(s, ctx, "asset.add", "asset", name, {"address": address, "port": port, "platform": platform,
                                                             "nodes": paths, "active": active, **options})
        store.upsert_asset(s, name, address=address, port=port, platform=platform, nodes=paths, active=active,
                           comment=comment, options=options)
    return store.get_asset(ctx.db, name)


def edit_asset(ctx: Context, name: str, *, address: str | None = None, port: int | str | None = None,
               platform: str | None = None, add_nodes: Iterable[str] = (), active: bool | None = None,
               comment: str | None = None, database: str | None = None, tls: str | None = None,
               ca_file: str | None = None, connect_timeout: float | None = None, command_timeout: float | None = None,
               gateway: str | None = None) -> tuple[AssetInfo, str]:
    """Change what is given (None keeps it; nodes are added); returns the asset and 'updated' or 'unchanged'.

    Audited as asset.edit with the fields that really changed. A new address or port drops the pinned keys.
    """
    from core.drivers.dbconn import check_options, is_database

    require(ctx, "edit")
    asset_in_scope(ctx, name)
    address = _name(address, "address", "address") if address is not None else None
    port_n = parse_port(port) if port is not None else None
    platform = _platform(platform) if platform is not None else None
    paths, comment = _nodes(add_nodes), _comment(comment)
    current = store.get_asset(ctx.db, name)
    have_nodes = set(current.nodes)
    with ctx.db.write() as s:
        row = store.get_asset_row(s, name)
        before: dict[str, Any] = {"address": row.address, "port": row.port, "platform": row.platform,
                                  "active": row.active, "comment": row.comment}
        new_address, new_port = address or row.address, port_n or row.port
        new_platform, new_active = platform or row.platform, row.active if active is None else active
        given = {"database": database, "tls": tls, "ca_file": ca_file, "connect_timeout": connect_timeout,
                 "command_timeout": command_timeout}
        options = None
        if is_database(new_platform) or any(v is not None for v in given.values()) or gateway is not None:
            merged = {k: getattr(row, k) if v is None else v for k, v in given.items()}
            options = check_options(new_platform, **merged, gateway=gateway)  # type: ignore[arg-type]
        wanted = {"address": new_address, "port": new_port, "platform": new_platform, "active": new_active}
        changes: dict[str, Any] = {k: v for k, v in wanted.items() if before[k] != v}
        if comment is not None and comment != before["comment"]:
            changes["comment"] = comment
        new_nodes = [p for p in paths if p not in have_nodes]
        if new_nodes:
            changes["add_nodes"] = new_nodes
        changes.update({k: v for k, v in (*given.items(), ("gateway", gateway)) if v is not None})
        if _moves(current, changes):
            _step_up(ctx, "asset.edit")  # nothing is written yet: the transaction ends without a change
        if changes:
            record_event_in(s, ctx, "asset.edit", "asset", name, changes)
        _, outcome = store.upsert_asset(s, name, address=new_address, port=new_port, platform=new_platform,
                                        active=new_active, nodes=paths, comment=comment, options=options)
    return store.get_asset(ctx.db, name), "updated" if changes or outcome != "unchanged" else "unchanged"


def asset_to_remove(ctx: Context, name: str) -> AssetRemoval:
    """What remove_asset would delete, for the confirmation."""
    asset = get_asset(ctx, name)
    return AssetRemoval(asset.name, asset.address, asset.port, len(store.list_accounts(ctx.db, asset=name)))


def remove_asset(ctx: Context, name: str) -> AssetRemoval:
    """Delete an asset with its accounts, their secrets and history, and its pinned keys; audited as asset.remove."""
    require(ctx, "edit")
    gone = asset_to_remove(ctx, name)
    with ctx.db.write() as s:
        record_event_in(s, ctx, "asset.remove", "asset", name, {"address": gone.address, "accounts": gone.accounts})
        store.remove_asset_in(s, name)
    return gone


def fetch_offer(ctx: Context, name: str) -> HostKeyOffer:
    """Connect to the asset and compare the host keys it offers with the pinned ones (nothing is written)."""
    from core.drivers.dbconn import is_database

    require(ctx, "edit")
    asset = get_asset(ctx, name)
    if is_database(asset.platform):
        raise InputError(f"asset {asset.name}: a {asset.platform} asset is reached with the database protocol and "
                         "has no SSH host key to pin (its gateway asset, if any, is trusted on its own)")
    offered = fetch_host_keys(asset.address, asset.port, timeout=ctx.settings.connect_timeout)
    offer = HostKeyOffer(asset, tuple(offered), check_trust(offered, asset))
    if not offer.check.already_pinned:
        # Asked before the fingerprints are shown for confirmation, so a front end asks for the code once.
        _step_up(ctx, "asset.trust")
    return offer


def pin_offer(ctx: Context, offer: HostKeyOffer) -> int:
    """Pin exactly the offered keys (replacing the pinned ones); audited as asset.trust. Returns the key count.

    The caller has shown the fingerprints and, for a changed key, had the replacement confirmed.
    """
    require(ctx, "edit")
    _step_up(ctx, "asset.trust")
    name = offer.asset.name
    asset_in_scope(ctx, name)
    with ctx.db.write() as s:
        record_event_in(s, ctx, "asset.trust", "asset", name, {
            "fingerprints": [fingerprint_sha256(b) for _, b in offer.offered],
            "replaced": [fingerprint_sha256(b) for _, b in offer.check.changed]})
        store.replace_host_keys_in(s, name, list(offer.offered), source="trust")
    return len(offer.offered)


# -- imports ---------------------------------------------------------------------------------------
def _summary_detail(summary: ImportSummary) -> dict[str, int]:
    return {k: getattr(summary, k) for k in ("nodes_created", "assets_created", "assets_updated", "accounts_created",
                                             "accounts_updated", "unchanged", "host_keys_pinned")}


def import_file(ctx: Context, path: Path, fmt: str | None = None, *, overwrite_rotated: bool = False,
                source: str | None = None) -> ImportSummary:
    """Import an inventory file, all of it or nothing; audited as inventory.import in the same transaction.

    The file is read and checked first (its errors name FILE:LINE), then a TOTP step-up, then the write."""
    from core.importer import apply_inventory, parse_inventory

    require(ctx, "edit")
    inventory = parse_inventory(path, fmt, source=source or str(path))
    _step_up(ctx, "inventory.import")

    def audit(s: Session, summary: ImportSummary) -> None:
        record_event_in(s, ctx, "inventory.import", "inventory", path.name,
                        {"format": fmt or "auto", **_summary_detail(summary)})

    return apply_inventory(ctx.db, inventory, overwrite_rotated=overwrite_rotated, before_commit=audit)


def import_known_hosts_file(ctx: Context, path: Path, source: str | None = None) -> ImportSummary:
    """Pin host keys from a known_hosts file onto existing assets; audited as inventory.import_known_hosts."""
    require(ctx, "edit")

    def audit(s: Session, summary: ImportSummary) -> None:
        record_event_in(s, ctx, "inventory.import_known_hosts", "inventory", path.name, _summary_detail(summary))

    return import_known_hosts(ctx.db, path, source=source or str(path), before_commit=audit,
                              before_write=lambda: _step_up(ctx, "asset.trust"))


# -- accounts --------------------------------------------------------------------------------------
def add_account(ctx: Context, asset: str, username: str, *, secret_type: str, secret: str,
                passphrase: str | None = None, become: str | None = None, privileged: bool = False,
                can_change: bool = True, key_label: str = "private key", clear_become: bool = False) -> str:
    """Add an account or give it a new secret (the old one stays in history); 'created', 'updated' or
    'unchanged'. Audited as account.add or account.update. key_label names the key's source in errors;
    clear_become drops a stored become (sudo) password (edit_account's --clear-become-password)."""
    require(ctx, "edit")
    asset_in_scope(ctx, asset)
    _check_become(become, clear_become)
    try:
        username = check_username(username or "")  # the rule the CLI, import and drivers apply: it reaches shells
    except ValueError as exc:
        raise InputError(str(exc), field="username") from None
    if secret_type not in ("password", "ssh_key"):
        raise InputError(f"secret type: {secret_type!r} is not password or ssh_key", field="secret_type")
    if not secret:
        raise InputError(f"{'password' if secret_type == 'password' else key_label}: is empty", field="secret")
    if secret_type == "ssh_key":
        check_private_key(secret, passphrase, key_label)
    check_account_step_up(ctx, asset, username, secret_type=secret_type, privileged=privileged)
    with ctx.db.write() as s:
        row = store.get_asset_row(s, asset)
        if not privileged and _is_privileged(s, asset, username, secret_type):
            _step_up(ctx, "account.privileged")  # made privileged since the check above: still nothing written
        had_become = _has_become(s, asset, username, secret_type)
        _, outcome = store.upsert_account(ctx.db, s, row, username, secret_type=secret_type, secret=secret,
                                          passphrase=passphrase, become=become, privileged=privileged,
                                          can_change=can_change, clear_become=clear_become)
        if outcome != "unchanged":
            record_event_in(s, ctx, f"account.{'add' if outcome == 'created' else 'update'}", "account",
                            f"{username}@{asset}", {"secret_type": secret_type, "privileged": privileged,
                                                    "can_change": can_change,
                                                    **_become_cleared(clear_become and had_become)})
    return outcome


def _check_become(become: str | None, clear_become: bool) -> None:
    if become and clear_become:
        raise InputError("become password: give a new one or clear it, not both", field="become")


def _has_become(s: Session, asset: str, username: str, secret_type: str | None) -> bool:
    try:
        return store.get_account_row(s, asset, username, secret_type).become_secret_enc is not None
    except NotFound:
        return False


def _become_cleared(cleared: bool) -> dict[str, object]:
    """The audit detail of a cleared become password (the event says so; a set one is never named)."""
    return {"become": "cleared"} if cleared else {}


def _is_privileged(s: Session, asset: str, username: str, secret_type: str | None) -> bool:
    try:
        return bool(store.get_account_row(s, asset, username, secret_type).privileged)
    except NotFound:
        return False


def check_account_step_up(ctx: Context, asset: str, username: str, *, secret_type: str | None = None,
                          privileged: bool = False) -> None:
    """StepUpRequired when adding or changing this account needs a TOTP code: it is, or is to become, privileged
    (keyturn logs in with it to change others). Nothing is read from the person or written.

    add_account checks this itself; a front end that reads the secrets from stdin calls it first, so that the
    code is asked for before the secrets are read."""
    require(ctx, "edit")
    asset_in_scope(ctx, asset)
    if not privileged:
        with ctx.db.read() as s:
            store.get_asset_row(s, asset)  # NotFound for an unknown asset before any code is asked
            privileged = _is_privileged(s, asset, username, secret_type)
    if privileged:
        _step_up(ctx, "account.privileged")


def account_to_remove(ctx: Context, asset: str, username: str, secret_type: str | None = None) -> AccountRemoval:
    """What remove_account would delete (AmbiguousAccount when the user has both types and none is named)."""
    asset_in_scope(ctx, asset)
    with ctx.db.read() as s:
        acc = store.get_account_row(s, asset, username, secret_type)
        return AccountRemoval(asset, username, acc.secret_type, acc.version)


def remove_account(ctx: Context, asset: str, username: str, secret_type: str | None = None) -> AccountRemoval:
    """Delete an account with its secret and history; audited as account.remove."""
    require(ctx, "edit")
    gone = account_to_remove(ctx, asset, username, secret_type)
    with ctx.db.write() as s:
        record_event_in(s, ctx, "account.remove", "account", f"{username}@{asset}",
                        {"secret_type": gone.secret_type, "version": gone.version})
        store.remove_account_in(s, asset, username, gone.secret_type)
    return gone


def edit_account(ctx: Context, asset: str, username: str, secret_type: str | None = None, *,
                 privileged: bool | None = None, can_change: bool | None = None, secret: str | None = None,
                 passphrase: str | None = None, become: str | None = None, key_label: str = "private key",
                 clear_become: bool = False) -> str:
    """Change an existing account's flags, and its secret or become (sudo) password when one is given (empty or
    None keeps the current one); clear_become drops the stored become password (not with a new one).

    'updated' or 'unchanged'; audited as account.update with the same detail as add_account, which does the
    change when there is a new secret. Flags left None stay as they are.
    """
    require(ctx, "edit")
    asset_in_scope(ctx, asset)
    _check_become(become, clear_become)
    with ctx.db.read() as s:
        acc = store.get_account_row(s, asset, username, secret_type)
        kind, was_privileged, was_changeable = acc.secret_type, acc.privileged, acc.can_change
        had_become = acc.become_secret_enc is not None
    new_privileged = was_privileged if privileged is None else privileged
    new_changeable = was_changeable if can_change is None else can_change
    if secret:
        return add_account(ctx, asset, username, secret_type=kind, secret=secret, passphrase=passphrase,
                           become=become or None, privileged=new_privileged, can_change=new_changeable,
                           key_label=key_label, clear_become=clear_become)
    clearing = clear_become and had_become
    if (new_privileged, new_changeable) == (was_privileged, was_changeable) and not become and not clearing:
        return "unchanged"
    if was_privileged or new_privileged:
        _step_up(ctx, "account.privileged")
    with ctx.db.write() as s:
        row = store.get_asset_row(s, asset)
        _, outcome = store.upsert_account(ctx.db, s, row, username, secret_type=kind, become=become or None,
                                          privileged=new_privileged, can_change=new_changeable,
                                          clear_become=clear_become)
        if outcome != "unchanged":
            record_event_in(s, ctx, "account.update", "account", f"{username}@{asset}",
                            {"secret_type": kind, "privileged": new_privileged, "can_change": new_changeable,
                             **_become_cleared(clearing)})
    return outcome
