"""Inventory import: CSV, keyturn YAML and Ansible (INI or YAML) files into nodes, assets and accounts.

Everything is parsed and validated first; only a file without a single error is written, in one
transaction. Errors name the file and line: ``inventory.csv:7: port 'ssh' is not a number 1-65535``.
The import file itself is never copied anywhere; its secrets go straight into the vault.

Secret values (``secret``, ``passphrase``, ``become_secret``, Ansible's ``ansible_password`` ...) may be
given inline or as a reference resolved at import time:

* ``env:NAME``  the value of environment variable NAME (missing -> error naming the line)
* ``file:PATH`` the content of PATH (relative to the import file's folder; ``~`` expands); one trailing
  newline is dropped for passwords, private keys are kept whole
* ``raw:TEXT``  TEXT as is (for a password that itself starts with ``env:`` or ``file:``)

CSV (header row required; one row per account; an asset row with an empty username is allowed)::

    asset,address,port,platform,nodes,username,secret_type,secret,passphrase,privileged,can_change,become_secret
    web1,10.0.0.5,22,linux,/prod/web;/eu,root,password,env:WEB1_ROOT_PW,,true,false,
    web1,,,,,deploy,ssh_key,file:keys/deploy_ed25519,,false,true,
    db1,10.0.0.9,2222,linux,/prod/db,,,,,,,

Only ``asset`` and ``address`` columns are required; optional ones are ``port`` (22), ``platform`` (linux),
``nodes`` (separated by ``;`` or ``|``), ``active``, ``comment``, ``username``, ``secret_type``
(password | ssh_key), ``secret``, ``passphrase``, ``privileged``, ``can_change``, ``become_secret``.
Later rows of the same asset may leave address/port/platform empty; when given they must agree.

keyturn YAML::

    assets:
      - name: web1
        address: 10.0.0.5
        port: 22
        platform: linux
        nodes: [/prod/web]
        accounts:
          - {username: root, secret: "env:WEB1_ROOT_PW", privileged: true, can_change: false}
          - {username: deploy, secret_type: ssh_key, secret: "file:keys/deploy_ed25519"}

Ansible inventories (INI or YAML): groups become nodes (a child group nests: ``db`` under ``prod`` is
``/prod/db``), ``ansible_host``/``ansible_port`` give the address and port, ``ansible_user`` with
``ansible_password`` or ``ansible_ssh_private_key_file`` becomes the privileged account, and
``ansible_become_password`` its become (sudo) secret. ``keyturn_platform`` sets the platform. See
docs/inventory.md for the full description.
"""

from __future__ import annotations

import csv
import functools
import gc
import os
import re
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec

import yaml
from sqlmodel import Session

from core.errors import InputError
from core.names import check_username
from core.values import FORMATS as FORMATS, check_private_key, parse_platform, parse_port, parse_secret_type
from core.wording import plural
from storage.db import Database
from storage.inventory import (
    BULK_BATCH, AccountItem, AssetItem, bulk_ensure_nodes, bulk_upsert_accounts, bulk_upsert_assets, normalize_node_path,
    start_bulk_write,
)
from storage.tables import utcnow
from storage.types import ImportSummary

DB_OPTION_KEYS: tuple[str, ...] = ("database", "tls", "ca_file", "connect_timeout", "command_timeout", "gateway")
CSV_COLUMNS: tuple[str, ...] = (
    "asset", "address", "port", "platform", "nodes", "active", "comment", "username", "secret_type", "secret",
    "passphrase", "privileged", "can_change", "become_secret", *DB_OPTION_KEYS,
)
MAX_REPORTED_ERRORS = 20

_T = TypeVar("_T")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_BAD_NAME = re.compile(r"[\s\x00-\x1f\x7f]")


# -- parsed inventory --------------------------------------------------------------------------------
@dataclass(slots=True)
class AccountEntry:
    """One account as the file describes it; secrets are already resolved (plaintext: never log)."""

    username: str
    line: int
    secret_type: str = "password"
    secret: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    become: str | None = field(default=None, repr=False)
    privileged: bool | None = None
    can_change: bool | None = None


@dataclass(slots=True)
class AssetEntry:
    """One asset as the file describes it."""

    name: str
    address: str
    line: int
    port: int = 22
    platform: str = "linux"
    nodes: list[str] = field(default_factory=list)
    active: bool | None = None
    comment: str | None = None
    accounts: list[AccountEntry] = field(default_factory=list)
    options: dict[str, object] | None = None  # database connection options, checked (None: leave as stored)


@dataclass
class Inventory:
    """A whole parsed file: its assets in file order, and notes for the summary."""

    source: str
    format: str
    assets: list[AssetEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Errors:
    """Collects `FILE:LINE: message` errors so one run reports every bad line, not just the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []
        self.first_line: int | None = None

    def add(self, line: int | None, message: str) -> None:
        """Remember one error."""
        if self.first_line is None:
            self.first_line = line
        self.items.append(f"{self.source}:{line}: {message}" if line else f"{self.source}: {message}")

    def raise_if_any(self) -> None:
        """Raise InputError listing the errors (the first MAX_REPORTED_ERRORS) when there are any."""
        if not self.items:
            return
        shown = self.items[:MAX_REPORTED_ERRORS]
        more = len(self.items) - len(shown)
        text = "\n".join(shown) + (f"\n... and {more} more errors" if more else "")
        raise InputError(text + "\nnothing was imported", line=self.first_line)


class _Resolver:
    """Resolves env:/file:/raw: secret references relative to the import file."""

    def __init__(self, base_dir: Path, env: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.env = env

    def path(self, value: str) -> Path:
        """A path from the file, relative to the import file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def secret(self, value: str | None, what: str, *, keep_whole: bool = False) -> str | None:
        """The secret a value stands for; ValueError names what is wrong (never the secret)."""
        if value is None or value == "":
            return None
        if value.startswith("raw:"):
            return value[4:]
        if value.startswith("env:"):
            name = value[4:].strip()
            if not name:
                raise ValueError(f"{what}: 'env:' needs a variable name")
            if name not in self.env:
                raise ValueError(f"{what}: environment variable {name} is not set")
            return self.env[name]
        if value.startswith("file:"):
            ref = value[5:].strip()
            if not ref:
                raise ValueError(f"{what}: 'file:' needs a path")
            return self.read(ref, what, keep_whole=keep_whole)
        return value

    def read(self, ref: str, what: str, *, keep_whole: bool = False) -> str:
        """Content of a referenced file; one trailing newline is dropped unless keep_whole."""
        path = self.path(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{what}: file {ref} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable UTF-8 text"
            raise ValueError(f"{what}: file {ref} cannot be read ({reason})") from None
        if not keep_whole:
            text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        return text


# -- shared checks ---------------------------------------------------------------------------------
def check_name(value: str, what: str) -> str:
    """The stripped name; ValueError when it is empty or holds spaces or control characters."""
    value = value.strip()
    if not value:
        raise ValueError(f"{what}: is empty")
    if _BAD_NAME.search(value):
        raise ValueError(f"{what}: {value!r} contains spaces or control characters")
    return value


def _parse_port(value: str | int | None) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 22
    return parse_port(value)  # BadValue is a ValueError: the file line is added where it is caught


def _parse_db_options(platform: str, get: Callable[[str], str | None]) -> dict[str, object] | None:
    """The database connection options of an asset (None when none is given for a host); ValueError names the key."""
    from core.drivers.dbconn import check_options, is_database

    raw = {k: (get(k) or "").strip() for k in DB_OPTION_KEYS}
    if not is_database(platform) and not any(raw.values()):
        return None
    timeouts: dict[str, Any] = {}
    for key in ("connect_timeout", "command_timeout"):
        try:
            timeouts[key] = float(raw[key]) if raw[key] else None
        except ValueError:
            raise ValueError(f"{key}: {raw[key]!r} is not a number of seconds") from None
    try:
        return check_options(platform, database=raw["database"], tls=raw["tls"], ca_file=raw["ca_file"],
                             gateway=raw["gateway"] or None, **timeouts)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def _default_port(port: str | int | None, platform: str) -> int:
    from core.drivers.dbconn import default_port

    if port is None or (isinstance(port, str) and not port.strip()):
        return default_port(platform)
    return _parse_port(port)


def _parse_bool(value: str | bool | None, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what}: {value!r} is not true or false")


def _parse_nodes(values: list[str]) -> list[str]:
    result: list[str] = []
    for v in values:
        if not v.strip():
            continue
        path = normalize_node_path(v)
        if path not in result:
            result.append(path)
    return result


def _finish_account(acc: AccountEntry, what: str) -> None:
    """Checks that need the whole account: a key must be a key its passphrase opens."""
    if acc.secret_type == "ssh_key" and acc.secret is not None:
        check_private_key(acc.secret, acc.passphrase, f"{what}: the private key")
    if acc.secret_type == "password":
        if acc.passphrase is not None:
            raise ValueError(f"{what}: a passphrase only goes with secret_type ssh_key")
        if acc.secret is not None and ("\n" in acc.secret or "\r" in acc.secret):
            raise ValueError(f"{what}: a password cannot contain a line break")


def _check_duplicates(inv: Inventory, errors: _Errors) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for asset in inv.assets:
        for acc in asset.accounts:
            key = (asset.name, acc.username, acc.secret_type)
            if key in seen:
                errors.add(acc.line, f"duplicate account {acc.username!r} ({acc.secret_type}) on asset "
                                     f"{asset.name!r}: first given on line {seen[key]}")
            else:
                seen[key] = acc.line


# -- CSV -------------------------------------------------------------------------------------------
_CSV_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _csv_lines(text: str) -> Iterator[str]:
    """text's lines with their ends, as io.StringIO(text, newline="") gives them to the csv module.

    Without the copy: StringIO holds the text again at four bytes a character (a fifth of a large
    import's peak memory).
    """
    return (m.group() for m in _CSV_LINE.finditer(text))


def parse_csv(text: str, source: str, resolver: _Resolver) -> Inventory:
    """Parse a keyturn CSV inventory (see the module docstring)."""
    errors = _Errors(source)
    inv = Inventory(source, "csv")
    reader = csv.reader(_csv_lines(text))
    header: list[str] | None = None
    by_name: dict[str, AssetEntry] = {}
    last_line = 0
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.add(reader.line_num or start, f"malformed CSV: {exc}")
            break
        last_line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            unknown = [c for c in header if c not in CSV_COLUMNS]
            if unknown:
                errors.add(start, f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(CSV_COLUMNS)})")
            for needed in ("asset", "address"):
                if needed not in header:
                    errors.add(start, f"the header row has no {needed!r} column (the first row must name the columns)")
            dupes = {c for c in header if header.count(c) > 1}
            if dupes:
                errors.add(start, f"column(s) {', '.join(sorted(dupes))} appear twice in the header")
            if errors.items:
                break
            continue
        if len(row) > len(header):
            errors.add(start, f"{len(row)} fields but the header has {len(header)} columns")
            continue
        cells = {name: (row[i] if i < len(row) else "") for i, name in enumerate(header)}
        try:
            _csv_row(cells, start, by_name, inv, resolver)
        except ValueError as exc:
            errors.add(start, str(exc))
    if header is None and not errors.items:
        errors.add(1, "empty file: a header row is required")
    _check_duplicates(inv, errors)
    errors.raise_if_any()
    return inv


def _csv_row(cells: dict[str, str], line: int, by_name: dict[str, AssetEntry], inv: Inventory, resolver: _Resolver) -> None:
    name = check_name(cells.get("asset", ""), "asset name")
    address = cells.get("address", "").strip()
    port_text = cells.get("port", "").strip()
    platform_text = cells.get("platform", "").strip()
    nodes = _parse_nodes(re.split(r"[;|]", cells.get("nodes", "")))
    active = _parse_bool(cells.get("active"), "active")
    comment = cells.get("comment", "").strip() or None
    asset = by_name.get(name)
    if asset is None:
        if not address:
            raise ValueError(f"asset {name!r} has no address")
        platform = parse_platform(platform_text)
        asset = AssetEntry(name=name, address=check_name(address, "address"), line=line,
                           port=_default_port(port_text, platform), platform=platform, nodes=nodes, active=active,
                           comment=comment, options=_parse_db_options(platform, cells.get))
        by_name[name] = asset
        inv.assets.append(asset)
    else:
        # A later row of the same asset may repeat its fields, but must not contradict them.
        if address and address != asset.address:
            raise ValueError(f"asset {name!r}: address {address!r} differs from {asset.address!r} on line {asset.line}")
        if port_text and _parse_port(port_text) != asset.port:
            raise ValueError(f"asset {name!r}: port {port_text} differs from {asset.port} on line {asset.line}")
        if platform_text and parse_platform(platform_text) != asset.platform:
            raise ValueError(f"asset {name!r}: platform {platform_text!r} differs from {asset.platform!r} on line {asset.line}")
        if active is not None and asset.active is not None and active != asset.active:
            raise ValueError(f"asset {name!r}: active differs from line {asset.line}")
        asset.active = asset.active if active is None else active
        asset.comment = asset.comment or comment
        asset.nodes += [n for n in nodes if n not in asset.nodes]
    username = cells.get("username", "").strip()
    account_fields = ("secret_type", "secret", "passphrase", "privileged", "can_change", "become_secret")
    if not username:
        given = [f for f in account_fields if cells.get(f, "").strip()]
        if given:
            raise ValueError(f"username: is empty, but {', '.join(given)} given")
        return
    username = check_username(username, "username")
    secret_type = parse_secret_type(cells.get("secret_type"))
    what = f"account {username!r} on {name!r}"
    acc = AccountEntry(
        username=username, line=line, secret_type=secret_type,
        secret=resolver.secret(cells.get("secret"), f"{what}: secret", keep_whole=secret_type == "ssh_key"),
        passphrase=resolver.secret(cells.get("passphrase"), f"{what}: passphrase"),
        become=resolver.secret(cells.get("become_secret"), f"{what}: become_secret"),
        privileged=_parse_bool(cells.get("privileged"), "privileged"),
        can_change=_parse_bool(cells.get("can_change"), "can_change"),
    )
    _finish_account(acc, what)
    asset.accounts.append(acc)


# -- YAML helpers ----------------------------------------------------------------------------------
def _compose(text: str, errors: _Errors) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        errors.add(mark.line + 1 if mark else 1, f"malformed YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        errors.add(1, f"malformed YAML: {exc}")
    return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, int]]:
    """(key, value node, key line) of a mapping node; ValueError for non-mappings and duplicate keys."""
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise _LineError(_line(node), f"{what} must be a mapping")
    seen: dict[str, int] = {}
    result = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise _LineError(_line(k), f"{what}: keys must be plain names")
        if k.value in seen:
            raise _LineError(_line(k), f"{what}: key {k.value!r} appears twice (first on line {seen[k.value]})")
        seen[k.value] = _line(k)
        result.append((k.value, v, _line(k)))
    return result


def _scalar(node: yaml.Node, what: str) -> str | None:
    """The scalar text as written (so a password 0123 stays '0123', not octal 83); None for null."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "!vault":
            raise _LineError(_line(node), f"{what}: Ansible Vault values are not supported; use env:NAME or file:PATH")
        if node.tag.endswith(":null") and node.style is None:
            return None
        return node.value
    raise _LineError(_line(node), f"{what} must be a single value")


def _str_list(node: yaml.Node, what: str) -> list[str]:
    if isinstance(node, yaml.SequenceNode):
        return [v for v in (_scalar(n, what) for n in node.value) if v]
    value = _scalar(node, what)
    return [p for p in re.split(r"[;|,]", value)] if value else []


class _LineError(ValueError):
    """A content error at a known line of the file."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


# -- keyturn YAML ----------------------------------------------------------------------------------
_ASSET_KEYS = {"name", "address", "port", "platform", "nodes", "active", "comment", "accounts", *DB_OPTION_KEYS}
_ACCOUNT_KEYS = {"username", "secret_type", "secret", "passphrase", "privileged", "can_change", "become_secret"}


def parse_keyturn_yaml(root: yaml.Node, source: str, resolver: _Resolver) -> Inventory:
    """Parse a keyturn YAML inventory (a list of assets, or a mapping with an `assets:` list)."""
    errors = _Errors(source)
    inv = Inventory(source, "yaml")
    items: yaml.Node | None = root
    if isinstance(root, yaml.MappingNode):
        try:
            top = _mapping(root, "the top level")
        except _LineError as exc:
            errors.add(exc.line, str(exc))
            errors.raise_if_any()
        items = None
        for key, value, line in top:
            if key == "assets":
                items = value
            elif key != "version":
                errors.add(line, f"unknown top-level key {key!r} (expected 'assets')")
        if items is None:
            errors.add(_line(root), "no 'assets:' list")
            errors.raise_if_any()
    if not isinstance(items, yaml.SequenceNode):
        errors.add(_line(items or root), "'assets' must be a list of assets")
        errors.raise_if_any()
        return inv  # not reached: the error above was raised
    seen: dict[str, int] = {}
    for item in items.value:
        try:
            asset = _yaml_asset(item, resolver, errors)
        except _LineError as exc:
            errors.add(exc.line, str(exc))
            continue
        if asset is None:
            continue
        if asset.name in seen:
            errors.add(asset.line, f"asset {asset.name!r} appears twice (first on line {seen[asset.name]})")
            continue
        seen[asset.name] = asset.line
        inv.assets.append(asset)
    _check_duplicates(inv, errors)
    errors.raise_if_any()
    return inv


def _yaml_asset(node: yaml.Node, resolver: _Resolver, errors: _Errors) -> AssetEntry | None:
    fields_ = _mapping(node, "an asset")
    values: dict[str, tuple[yaml.Node, int]] = {}
    for key, value, line in fields_:
        if key not in _ASSET_KEYS:
            raise _LineError(line, f"unknown asset key {key!r} (known: {', '.join(sorted(_ASSET_KEYS))})")
        values[key] = (value, line)

    def get(key: str) -> str | None:
        return _scalar(values[key][0], key) if key in values else None

    def at(key: str) -> int:
        return values[key][1] if key in values else _line(node)

    def check(key: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except _LineError:
            raise
        except ValueError as exc:
            raise _LineError(at(key), str(exc)) from None

    name = check("name", lambda: check_name(get("name") or "", "asset name"))
    address = get("address")
    if not address:
        raise _LineError(at("address"), f"asset {name!r} has no address")
    platform = str(check("platform", lambda: parse_platform(get("platform"))))
    asset = AssetEntry(
        name=str(name), address=str(check("address", lambda: check_name(address, "address"))), line=_line(node),
        port=int(check("port", lambda: _default_port(get("port"), platform))),  # type: ignore[arg-type]
        platform=platform,
        options=check("platform", lambda: _parse_db_options(platform, get)),  # type: ignore[arg-type]
        nodes=list(check("nodes", lambda: _parse_nodes(_str_list(values["nodes"][0], "nodes") if "nodes" in values else []))),  # type: ignore[arg-type]
        active=check("active", lambda: _parse_bool(get("active"), "active")),  # type: ignore[arg-type]
        comment=get("comment"),
    )
    if "accounts" in values:
        accounts = values["accounts"][0]
        if isinstance(accounts, yaml.ScalarNode) and accounts.tag.endswith(":null"):
            return asset
        if not isinstance(accounts, yaml.SequenceNode):
            raise _LineError(at("accounts"), "'accounts' must be a list")
        for acc_node in accounts.value:
            try:
                asset.accounts.append(_yaml_account(acc_node, asset.name, resolver))
            except _LineError as exc:
                errors.add(exc.line, str(exc))
    return asset


def _yaml_account(node: yaml.Node, asset_name: str, resolver: _Resolver) -> AccountEntry:
    values: dict[str, tuple[yaml.Node, int]] = {}
    for key, value, line in _mapping(node, "an account"):
        if key not in _ACCOUNT_KEYS:
            raise _LineError(line, f"unknown account key {key!r} (known: {', '.join(sorted(_ACCOUNT_KEYS))})")
        values[key] = (value, line)

    def get(key: str) -> str | None:
        return _scalar(values[key][0], key) if key in values else None

    def at(key: str) -> int:
        return values[key][1] if key in values else _line(node)

    try:
        username = check_username(get("username") or "", "username")
    except ValueError as exc:
        raise _LineError(at("username"), str(exc)) from None
    what = f"account {username!r} on {asset_name!r}"
    key = "secret_type"
    try:
        secret_type = parse_secret_type(get(key))
        key = "secret"
        secret = resolver.secret(get(key), f"{what}: secret", keep_whole=secret_type == "ssh_key")
        key = "passphrase"
        passphrase = resolver.secret(get(key), f"{what}: passphrase")
        key = "become_secret"
        become = resolver.secret(get(key), f"{what}: become_secret")
        key = "privileged"
        privileged = _parse_bool(get(key), key)
        key = "can_change"
        can_change = _parse_bool(get(key), key)
        acc = AccountEntry(username=username, line=_line(node), secret_type=secret_type, secret=secret,
                           passphrase=passphrase, become=become, privileged=privileged, can_change=can_change)
        key = "secret"
        _finish_account(acc, what)
    except _LineError:
        raise
    except ValueError as exc:
        raise _LineError(at(key), str(exc)) from None
    return acc


# -- Ansible (INI and YAML share the group model) -----------------------------------------------------
# Slots: an inventory of 100,000 hosts holds a few of these per host, and their size is the import's peak memory.
@dataclass(slots=True)
class _Var:
    value: str | None
    line: int


@dataclass
class _Group:
    name: str
    line: int
    vars: dict[str, _Var] = field(default_factory=dict)
    children: set[str] = field(default_factory=set)
    parents: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Host:
    name: str
    line: int
    port: int | None = None
    groups: tuple[str, ...] = ()  # a tuple, not a set: most hosts are in one group, and a set costs 216 bytes
    vars: dict[str, _Var] = field(default_factory=dict)


class _AnsibleModel:
    """Groups and hosts of an Ansible inventory, with the line where each var was set."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _Host] = {}

    def group(self, name: str, line: int) -> _Group:
        """The group named name, created at line when new."""
        if name not in self.groups:
            self.groups[name] = _Group(name, line)
        return self.groups[name]

    def host(self, pattern: str, line: int, group: str) -> list[_Host]:
        """Hosts named by pattern (ranges expanded, host:port split) added to group."""
        result = []
        for name in _expand_hosts(pattern):
            name, port = _split_host_port(name)
            host = self.hosts.get(name)
            if host is None:
                host = self.hosts[name] = _Host(name, line)
            if port is not None:
                host.port = port
            if group not in host.groups:
                host.groups += (group,)
            self.group(group, line)
            result.append(host)
        return result

    def link(self, parent: str, child: str, line: int) -> None:
        """Make child a child group of parent."""
        self.group(parent, line).children.add(child)
        self.group(child, line).parents.add(parent)


_RANGE = re.compile(r"\[([a-zA-Z0-9]+):([a-zA-Z0-9]+)(?::(\d+))?\]")


def _expand_hosts(pattern: str) -> list[str]:
    """Ansible host ranges: web[01:03] -> web01, web02, web03; db-[a:c] -> db-a .. db-c."""
    m = _RANGE.search(pattern)
    if not m:
        return [pattern]
    start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[: m.start()], pattern[m.end():]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise ValueError(f"host range {m.group(0)!r} is neither numeric nor single letters")
    if not values:
        raise ValueError(f"host range {m.group(0)!r} is empty")
    return [h for v in values for h in _expand_hosts(head + v + tail)]


def _split_host_port(name: str) -> tuple[str, int | None]:
    if name.count(":") == 1 and not name.startswith("["):
        host, port = name.split(":")
        return host, _parse_port(port)
    if name.startswith("[") and "]:" in name:
        host, port = name[1:].split("]:", 1)
        return host, _parse_port(port)
    return name, None


_SHELL_WHITESPACE = re.compile(r"[ \t\r\n]+")


def _split_host_line(line: str) -> list[str]:
    """A host line's words as shlex.split(line, comments=True) gives them.

    shlex reads a character at a time, which made it most of the time of a large import; a line with no
    quote or backslash (nearly all of them) means the same split on shlex's whitespace, up to the first '#'.
    """
    if "'" in line or '"' in line or "\\" in line:
        return shlex.split(line, comments=True)
    return [w for w in _SHELL_WHITESPACE.split(line.split("#", 1)[0]) if w]


# Where str.splitlines() splits: \r\n, and each of these alone.
_LINE_END = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _lines(text: str) -> Iterator[str]:
    """The lines str.splitlines() gives, one at a time: a list of all of them was a tenth of a large import's memory."""
    start = 0
    for end in _LINE_END.finditer(text):
        yield text[start : end.start()]
        start = end.end()
    if start < len(text):
        yield text[start:]


def parse_ansible_ini(text: str, source: str, resolver: _Resolver) -> Inventory:
    """Parse an Ansible INI inventory ([group], [group:vars], [group:children])."""
    errors = _Errors(source)
    model = _AnsibleModel()
    model.group("all", 0)
    kind, group = "hosts", "ungrouped"
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([^\]:\s]+)(?::(\w+))?\]\s*(?:[#;].*)?", line)
            if not m:
                errors.add(lineno, f"malformed section header {line!r}")
                kind = "skip"
                continue
            group, suffix = m.group(1), m.group(2) or "hosts"
            if suffix not in ("hosts", "vars", "children"):
                errors.add(lineno, f"unknown section type ':{suffix}' (known: vars, children)")
                kind = "skip"
                continue
            kind = suffix
            model.group(group, lineno)
            continue
        try:
            if kind == "hosts":
                tokens = _split_host_line(line)
                if not tokens:
                    continue
                hvars = {}
                for tok in tokens[1:]:
                    if "=" not in tok:
                        raise ValueError(f"expected key=value after the host name, got {tok!r}")
                    k, v = tok.split("=", 1)
                    hvars[sys.intern(k)] = _Var(v, lineno)  # one copy of each variable name, not one per host
                for host in model.host(tokens[0], lineno, group):
                    host.vars.update(hvars)
            elif kind == "vars":
                if "=" not in line:
                    raise ValueError(f"expected key=value in [{group}:vars], got {line!r}")
                k, v = (p.strip() for p in line.split("=", 1))
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                model.group(group, lineno).vars[k] = _Var(v, lineno)
            elif kind == "children":
                child = line.split()[0]
                model.link(group, child, lineno)
        except ValueError as exc:
            errors.add(lineno, str(exc))
    errors.raise_if_any()
    return _ansible_inventory(model, source, resolver, "ansible")


def looks_like_ansible_yaml(root: yaml.Node) -> bool:
    """Whether a YAML document is an Ansible inventory: top-level groups holding hosts:/children:/vars:."""
    if not isinstance(root, yaml.MappingNode) or not root.value:
        return False
    saw_group = False
    for k, v in root.value:
        if not isinstance(k, yaml.ScalarNode) or k.value in ("assets", "version"):
            return False
        if isinstance(v, yaml.MappingNode):
            keys = {kk.value for kk, _ in v.value if isinstance(kk, yaml.ScalarNode)}
            if not keys <= {"hosts", "children", "vars"}:
                return False
            saw_group = saw_group or bool(keys & {"hosts", "children"})
        elif not (isinstance(v, yaml.ScalarNode) and v.tag.endswith(":null")):
            return False
    return saw_group


def parse_ansible_yaml(root: yaml.Node, source: str, resolver: _Resolver) -> Inventory:
    """Parse an Ansible YAML inventory (all: / group: with hosts:, children:, vars:)."""
    errors = _Errors(source)
    model = _AnsibleModel()
    model.group("all", 0)

    def walk_group(name: str, node: yaml.Node, line: int, depth: int) -> None:
        if depth > 50:
            raise _LineError(line, f"group {name!r} nests too deep (a cycle?)")
        group = model.group(name, line)
        for key, value, kline in _mapping(node, f"group {name!r}"):
            if key == "hosts":
                for hname, hnode, hline in _mapping(value, f"hosts of {name!r}"):
                    try:
                        hosts = model.host(hname, hline, name)
                    except ValueError as exc:
                        raise _LineError(hline, str(exc)) from None
                    hvars = {k: _Var(_scalar(v, k) if isinstance(v, yaml.ScalarNode) else None, vline)
                             for k, v, vline in _mapping(hnode, f"host {hname!r}")}
                    for host in hosts:
                        host.vars.update(hvars)
            elif key == "vars":
                for vname, vnode, vline in _mapping(value, f"vars of {name!r}"):
                    group.vars[vname] = _Var(_scalar(vnode, vname) if isinstance(vnode, yaml.ScalarNode) else None, vline)
            elif key == "children":
                for cname, cnode, cline in _mapping(value, f"children of {name!r}"):
                    if name != "all":
                        model.link(name, cname, cline)
                    walk_group(cname, cnode, cline, depth + 1)
            else:
                raise _LineError(kline, f"group {name!r}: unknown key {key!r} (expected hosts, children or vars)")

    try:
        for name, node, line in _mapping(root, "the top level"):
            walk_group(name, node, line, 0)
    except _LineError as exc:
        errors.add(exc.line, str(exc))
    errors.raise_if_any()
    return _ansible_inventory(model, source, resolver, "ansible")


_USER_VARS = ("ansible_user", "ansible_ssh_user")
_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
_KEYFILE_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
_BECOME_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass", "ansible_sudo_password")
_HOST_VARS = ("ansible_host", "ansible_ssh_host")
_PORT_VARS = ("ansible_port", "ansible_ssh_port")


def _ansible_inventory(model: _AnsibleModel, source: str, resolver: _Resolver, fmt: str) -> Inventory:
    """Turn the group model into assets: groups -> node paths, vars -> address, port and accounts."""
    errors = _Errors(source)
    inv = Inventory(source, fmt)
    paths: dict[str, list[str]] = {}
    depth: dict[str, int] = {}

    def group_paths(name: str, trail: tuple[str, ...] = ()) -> list[str]:
        if name in trail:
            raise ValueError(f"group {name!r} is its own ancestor ({' -> '.join((*trail, name))})")
        if name in ("all", "ungrouped"):
            return []
        if name not in paths:
            parents = [p for p in sorted(model.groups[name].parents) if p not in ("all", "ungrouped")]
            if not parents:
                paths[name] = ["/" + name]
            else:
                paths[name] = [f"{p}/{name}" for parent in parents for p in group_paths(parent, (*trail, name))]
        return paths[name]

    def group_depth(name: str) -> int:
        if name == "all":
            return 0
        if name not in depth:
            parents = [p for p in model.groups[name].parents if p != "all"]
            depth[name] = 1 + max((group_depth(p) for p in parents), default=0)
        return depth[name]

    def ancestors(name: str) -> set[str]:
        found, todo = set(), [name]
        while todo:
            g = todo.pop()
            if g in found:
                continue
            found.add(g)
            todo.extend(model.groups[g].parents)
        return found

    for name, group in model.groups.items():
        try:
            group_paths(name)
        except ValueError as exc:
            errors.add(group.line, str(exc))
    errors.raise_if_any()

    # Hosts in the same groups share their group variables and nodes: worked out once per set of groups.
    by_groups: dict[frozenset[str], tuple[dict[str, _Var], list[str]]] = {}
    for name in list(model.hosts):
        # A host's model is dropped once it is an asset: holding both for every host was the peak memory.
        host = model.hosts.pop(name)
        key = frozenset(host.groups)
        if key not in by_groups:
            groups = set().union(*(ancestors(g) for g in key)) | {"all"}
            # Ansible's precedence: all, then groups by depth (parents before children), then the host itself.
            group_vars: dict[str, _Var] = {}
            for g in sorted(groups, key=lambda g: (group_depth(g), g)):
                group_vars.update(model.groups[g].vars)
            by_groups[key] = (group_vars, sorted({p for g in key for p in group_paths(g)}))
        group_vars, nodes = by_groups[key]
        try:
            inv.assets.append(_ansible_asset(host, {**group_vars, **host.vars}, list(nodes), resolver))
        except _LineError as exc:
            errors.add(exc.line, str(exc))
    errors.raise_if_any()
    return inv


def _ansible_asset(host: _Host, v: dict[str, _Var], nodes: list[str], resolver: _Resolver) -> AssetEntry:
    def first(names: tuple[str, ...]) -> _Var | None:
        for n in names:
            if n in v and v[n].value not in (None, ""):
                var = v[n]
                if "{{" in (var.value or ""):
                    raise _LineError(var.line, f"{n} of host {host.name!r} is a template; keyturn cannot evaluate "
                                               "Jinja: give the value, or env:NAME / file:PATH")
                return var
        return None

    def check(var: _Var | None, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ValueError as exc:
            raise _LineError(var.line if var else host.line, f"host {host.name!r}: {exc}") from None

    addr_var, port_var, plat_var = first(_HOST_VARS), first(_PORT_VARS), first(("keyturn_platform",))
    name = check(None, lambda: check_name(host.name, "host name"))
    platform = str(check(plat_var, lambda: parse_platform(plat_var.value if plat_var else None)))
    db_vars = {k: first((f"keyturn_{k}",)) for k in DB_OPTION_KEYS}  # keyturn_database, keyturn_tls, ...
    asset = AssetEntry(
        name=str(name), line=host.line,
        address=str(check(addr_var, lambda: check_name((addr_var.value or "") if addr_var else host.name, "address"))),
        port=int(check(port_var, lambda: _default_port(port_var.value if port_var else host.port, platform)),),  # type: ignore[arg-type]
        platform=platform,
        nodes=nodes,
        options=check(plat_var, lambda: _parse_db_options(  # type: ignore[arg-type]
            platform, lambda k: str(db_vars[k].value) if db_vars.get(k) is not None else None)),  # type: ignore[union-attr]
    )
    user_var, pw_var, key_var = first(_USER_VARS), first(_PASSWORD_VARS), first(_KEYFILE_VARS)
    become_var, phrase_var = first(_BECOME_VARS), first(("keyturn_key_passphrase",))
    if user_var is None:
        for var, label in ((pw_var, "a password"), (key_var, "a private key file"), (become_var, "a become password")):
            if var is not None:
                raise _LineError(var.line, f"host {host.name!r} has {label} but no ansible_user to go with it")
        return asset
    username = str(check(user_var, lambda: check_username(user_var.value or "", "ansible_user")))
    become = check(become_var, lambda: resolver.secret(become_var.value if become_var else None, "ansible_become_password"))
    if pw_var is not None:
        pw = check(pw_var, lambda: resolver.secret(pw_var.value, "ansible_password"))
        acc = AccountEntry(username=username, line=pw_var.line, secret_type="password", secret=pw,  # type: ignore[arg-type]
                           become=become, privileged=True)  # type: ignore[arg-type]
        check(pw_var, lambda: _finish_account(acc, "ansible_password"))
        asset.accounts.append(acc)
    if key_var is not None:
        key_text = check(key_var, lambda: resolver.read(key_var.value or "", "ansible_ssh_private_key_file", keep_whole=True))
        phrase = check(phrase_var, lambda: resolver.secret(phrase_var.value if phrase_var else None, "keyturn_key_passphrase"))
        acc = AccountEntry(username=username, line=key_var.line, secret_type="ssh_key", secret=key_text,  # type: ignore[arg-type]
                           passphrase=phrase, become=become, privileged=True)  # type: ignore[arg-type]
        check(key_var, lambda: _finish_account(acc, f"private key file {key_var.value}"))
        asset.accounts.append(acc)
    if pw_var is None and key_var is None:
        # Kept without a secret so the privileged login is known; its secret can be added later.
        asset.accounts.append(AccountEntry(username=username, line=user_var.line, become=become, privileged=True))  # type: ignore[arg-type]
    return asset


# -- entry points ----------------------------------------------------------------------------------
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _cyclic_gc_paused(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run fn with Python's cyclic garbage collector paused (as it was before, afterwards).

    Reading and writing a large inventory makes millions of small objects that hold no reference cycles;
    the collector kept rescanning all of them, which was half the time of a 100,000-line import. Memory
    is still freed by reference counting; only cycles wait for the collector to run again.
    """

    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


def detect_format(path: Path) -> str:
    """csv for .csv, yaml for .yaml/.yml (keyturn or Ansible YAML, told apart by content), else ansible INI."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "ansible"


@_cyclic_gc_paused
def parse_inventory(path: Path, fmt: str | None = None, *, env: Mapping[str, str] | None = None,
                    source: str | None = None) -> Inventory:
    """Read and validate an inventory file without writing anything; InputError names FILE:LINE."""
    source = source or str(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{source}:{line}: not UTF-8 text") from None
    del raw  # the file's bytes are not needed past here; a large file's would stay for the whole parse
    resolver = _Resolver(path.resolve().parent, os.environ if env is None else env)
    fmt = fmt or detect_format(path)
    if fmt == "csv":
        return parse_csv(text, source, resolver)
    if fmt == "ansible" and detect_format(path) != "yaml":
        return parse_ansible_ini(text, source, resolver)
    errors = _Errors(source)
    root = _compose(text, errors)
    errors.raise_if_any()
    if root is None:
        raise InputError(f"{source}:1: empty YAML file")
    if looks_like_ansible_yaml(root):
        return parse_ansible_yaml(root, source, resolver)
    if fmt == "ansible":
        raise InputError(f"{source}:{_line(root)}: not an Ansible YAML inventory (top-level groups with hosts:/children:)")
    return parse_keyturn_yaml(root, source, resolver)


BeforeCommit = Callable[[Session, ImportSummary], None]


class ImportConflict(InputError):
    """The file would overwrite secrets keyturn rotated after the ones it knows (DESIGN.md point 7)."""


@_cyclic_gc_paused
def apply_inventory(db: Database, inv: Inventory, *, before_commit: BeforeCommit | None = None,
                    overwrite_rotated: bool = False) -> ImportSummary:
    """Write a validated inventory in one transaction; returns what was created, updated or unchanged.

    A secret keyturn rotated is newer than any file that predates the rotation: unless overwrite_rotated,
    an import that would replace one writes nothing and names every such account (ImportConflict). With
    it, the rotated secret goes to the account's history like any replaced secret.
    before_commit runs inside that transaction (the audit event commits with the import, or neither does).
    The rows are written in batches of bulk statements (storage.inventory.bulk_*), a few per batch of
    assets and accounts, never one query per line of the file.
    """
    summary = ImportSummary(messages=list(inv.notes))
    conflicts: list[str] = []
    outcomes: Counter[tuple[str, str]] = Counter()
    with db.write() as s:
        when = utcnow()
        start_bulk_write(s)
        node_ids, summary.nodes_created = bulk_ensure_nodes(s, (p for entry in inv.assets for p in entry.nodes))
        for batch in _asset_batches(inv.assets):
            ids = bulk_upsert_assets(s, [
                AssetItem(e.name, e.address, e.port, e.platform, tuple(e.nodes), e.active, e.comment, e.options)
                for e in batch
            ], node_ids, when=when)
            items: list[AccountItem] = []
            where: list[tuple[AssetEntry, AccountEntry]] = []
            for entry, (asset_id, outcome) in zip(batch, ids, strict=True):
                outcomes[("assets", outcome)] += 1
                for acc in entry.accounts:
                    items.append(AccountItem(asset_id, acc.username, acc.secret_type, acc.secret, acc.passphrase,
                                             acc.become, acc.privileged, acc.can_change))
                    where.append((entry, acc))
            created = [asset_id for asset_id, outcome in ids if outcome == "created"]
            results = bulk_upsert_accounts(db, s, items, overwrite_rotated=overwrite_rotated, new_assets=created,
                                           when=when)
            for (entry, acc), result in zip(where, results, strict=True):
                if result.outcome == "conflict":
                    rotated = result.rotated_at.strftime("%Y-%m-%d %H:%M:%SZ") if result.rotated_at else "?"
                    conflicts.append(f"{inv.source}:{acc.line}: {entry.name}/{acc.username}: keyturn rotated this "
                                     f"secret on {rotated}, after the one in the file")
                else:
                    outcomes[("accounts", result.outcome)] += 1
        for (kind, outcome), n in outcomes.items():
            _count(summary, kind, outcome, n)
        if conflicts:
            # Raising rolls the whole transaction back: nothing of the file is written.
            raise ImportConflict("\n".join([
                f"{plural(len(conflicts), 'account')} {'holds' if len(conflicts) == 1 else 'hold'} a secret keyturn rotated; the file would put an older one back "
                "(nothing was imported; re-import with --overwrite-rotated to replace them anyway, the rotated "
                "secrets then stay in history):", *conflicts]))
        if before_commit is not None:
            before_commit(s, summary)
    return summary


def _asset_batches(assets: list[AssetEntry]) -> Iterator[list[AssetEntry]]:
    """Consecutive assets holding about BULK_BATCH assets plus accounts (an asset is never split)."""
    batch: list[AssetEntry] = []
    size = 0
    for entry in assets:
        batch.append(entry)
        size += 1 + len(entry.accounts)
        if size >= BULK_BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _count(summary: ImportSummary, kind: str, outcome: str, n: int = 1) -> None:
    if outcome == "unchanged":
        summary.unchanged += n
    else:
        name = f"{kind}_{outcome}"
        setattr(summary, name, getattr(summary, name) + n)


def import_inventory(db: Database, path: Path, fmt: str | None = None, *, env: Mapping[str, str] | None = None,
                     source: str | None = None, before_commit: BeforeCommit | None = None,
                     overwrite_rotated: bool = False) -> ImportSummary:
    """Parse, validate, then write an inventory file: all of it or (on any error) nothing."""
    return apply_inventory(db, parse_inventory(path, fmt, env=env, source=source), before_commit=before_commit,
                           overwrite_rotated=overwrite_rotated)


def describe_summary(summary: ImportSummary) -> str:
    """One line for the terminal: what the import created, updated and left unchanged."""
    if not summary.changed:
        return f"nothing changed ({summary.unchanged} unchanged)"
    counts = [
        (summary.nodes_created, "node", "created"), (summary.assets_created, "asset", "created"),
        (summary.assets_updated, "asset", "updated"), (summary.accounts_created, "account", "created"),
        (summary.accounts_updated, "account", "updated"), (summary.host_keys_pinned, "host key", "pinned"),
    ]
    parts = [f"{n} {noun}{'s' if n != 1 else ''} {verb}" for n, noun, verb in counts if n]
    return ", ".join([*parts, f"{summary.unchanged} unchanged"])
