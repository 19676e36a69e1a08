"""keyturn command group: inventory import, assets, accounts, nodes and host key trust."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The handlers import core.services, the drivers and the importer themselves: registering the commands (and
# `keyturn --help`) needs argparse and these light modules only.
from core.errors import HostKeyChanged, InputError, KeyturnError
from core.names import check_username
from core.values import FORMATS, PLATFORMS, REJECTED_PLATFORMS, TLS_MODES, is_database
from core.wording import plural
from core.types import AccountInfo, AssetInfo, ImportSummary, fingerprint_sha256
from tui.cli.stdin import without_line_end

if TYPE_CHECKING:
    from core.config import Settings
    from core.context import Context


class NotConfirmed(KeyturnError):
    """A destructive step needs a confirmation that was not given."""

    exit_code = 1


# -- helpers -----------------------------------------------------------------------------------------
def _confirm(question: str, yes: bool, refuse: str) -> None:
    """Ask question on the terminal unless yes; without a terminal refuse with NotConfirmed(refuse)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmed(refuse)
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing changed")


class _StdinSecrets:
    """Reads secrets one line each from stdin (or a hidden prompt on a terminal); never from argv."""

    def __init__(self) -> None:
        self.count = 0

    def read(self, what: str) -> str:
        """The next secret; InputError when stdin ends or the value is empty."""
        self.count += 1
        if sys.stdin.isatty():
            value = getpass.getpass(f"{what}: ")
        else:
            line = sys.stdin.readline()
            if not line:
                raise InputError(f"expected the {what} on line {self.count} of stdin, got end of input")
            value = without_line_end(line)
        if not value:
            raise InputError(f"the {what} read from stdin is empty")
        if "\r" in value or "\n" in value:
            # Only a "\n" or "\r\n" line end is removed; a carriage return elsewhere is not a typing slip to drop.
            raise InputError(f"the {what} read from stdin contains a carriage return (a line ends with \\n or "
                             "\\r\\n only); a secret cannot contain a line break")
        return value


def _port(text: str) -> int:
    from core.values import BadValue, parse_port

    try:
        return parse_port(text)
    except BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _node_path(text: str) -> str:
    from core.services import inventory as svc

    try:
        return svc.parse_node_path(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _username(text: str) -> str:
    try:
        return check_username(text, "username")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(what: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> str:
        from core.importer import check_name

        try:
            return check_name(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def asset_to_dict(a: AssetInfo) -> dict[str, Any]:
    """JSON form of an asset (no secrets exist on assets)."""
    out: dict[str, Any] = {
        "name": a.name, "address": a.address, "port": a.port, "platform": a.platform, "active": a.active,
        "comment": a.comment, "nodes": list(a.nodes),
        "host_keys": [{"type": k.key_type, "fingerprint": k.fingerprint, "source": k.source} for k in a.host_keys],
    }
    if is_database(a.platform):
        out.update(database=a.database, tls=a.tls or "disable", ca_file=a.ca_file, connect_timeout=a.connect_timeout,
                   command_timeout=a.command_timeout)
    return out


def account_to_dict(a: AccountInfo) -> dict[str, Any]:
    """JSON form of an account: whether it has a secret, never the secret."""
    return {
        "asset": a.asset_name, "username": a.username, "secret_type": a.secret_type, "privileged": a.privileged,
        "can_change": a.can_change, "version": a.version, "last_changed_at": _time(a.last_changed_at),
        "last_status": a.last_status, "has_secret": a.has_secret, "has_become": a.has_become,
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _print_summary(label: str, summary: ImportSummary) -> None:
    from core.importer import describe_summary

    print(f"{label}: {describe_summary(summary)}")
    for message in summary.messages:
        print(f"  {message}")


# -- import --------------------------------------------------------------------------------------------
def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn import FILE | --known-hosts FILE."""
    from core.services import inventory as svc

    if args.known_hosts:
        if args.file or args.format:
            raise InputError("give either an inventory FILE or --known-hosts FILE, not both")
        summary = svc.import_known_hosts_file(ctx, Path(args.known_hosts), source=args.known_hosts)
        _print_summary(f"imported host keys from {args.known_hosts}", summary)
        return 0
    if not args.file:
        raise InputError("give an inventory FILE to import (or --known-hosts FILE)")
    summary = svc.import_file(ctx, Path(args.file), args.format, source=args.file,
                              overwrite_rotated=args.overwrite_rotated)
    _print_summary(f"imported {args.file}", summary)
    return 0


# -- assets --------------------------------------------------------------------------------------------
def cmd_asset_add(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset add."""
    from core.services import inventory as svc

    asset = svc.add_asset(ctx, args.name, address=args.address, port=args.port, platform=args.platform,
                          nodes=args.node or [], active=not args.inactive, comment=args.comment,
                          database=args.database or "", tls=args.tls or "", ca_file=args.ca_file or "",
                          connect_timeout=args.connect_timeout, command_timeout=args.command_timeout,
                          gateway=args.gateway)
    print(f"asset {args.name} added ({args.address}:{asset.port}, {args.platform})")
    if is_database(args.platform):
        print(f"add its admin login next: keyturn account add {args.name} USER --password-stdin --privileged")
    else:
        print(f"pin its host key next: keyturn asset trust {args.name}")
    return 0


def cmd_asset_list(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset list."""
    from core.services import inventory as svc

    if args.node:
        svc.parse_node_path(args.node)  # InputError (field nodes) for '/' or '', before anything is read
    return _print_assets(svc.list_assets(ctx, node=args.node), args)


def quick_asset_list(settings: Settings, operator: str, args: argparse.Namespace) -> int | None:
    """keyturn asset list read without the ORM (core.quicklist); None when this vault needs the full path."""
    from core import quicklist

    assets = quicklist.list_assets(settings, operator, node=args.node)
    return None if assets is None else _print_assets(assets, args)


def _print_assets(assets: list[AssetInfo], args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([asset_to_dict(a) for a in assets], indent=2))
        return 0
    if not assets:
        print("no assets" + (f" under {args.node}" if args.node else ""))
        return 0
    rows = [[a.name, a.address, str(a.port), a.platform, "yes" if a.active else "no", ",".join(a.nodes) or "-",
             str(len(a.host_keys))] for a in assets]
    print(_table(rows, ["NAME", "ADDRESS", "PORT", "PLATFORM", "ACTIVE", "NODES", "KEYS"]))
    return 0


def cmd_asset_show(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset show."""
    from core.drivers.dbconn import describe_options
    from core.services import inventory as svc

    asset = svc.get_asset(ctx, args.name)
    accounts = svc.list_accounts(ctx, asset=args.name)
    if args.json:
        print(json.dumps({**asset_to_dict(asset), "accounts": [account_to_dict(a) for a in accounts]}, indent=2))
        return 0
    print(f"name:      {asset.name}")
    print(f"address:   {asset.address}")
    print(f"port:      {asset.port}")
    print(f"platform:  {asset.platform}")
    print(f"active:    {'yes' if asset.active else 'no'}")
    if asset.comment:
        print(f"comment:   {asset.comment}")
    print(f"nodes:     {', '.join(asset.nodes) or '-'}")
    for label, value in describe_options(asset):
        print(f"{label + ':':<10} {value}")
    if is_database(asset.platform):
        print("host keys: not used (database protocol)")
    else:
        print("host keys:" + ("" if asset.host_keys else f" none pinned (run `keyturn asset trust {asset.name}`)"))
    for k in asset.host_keys:
        print(f"  {k.key_type:<22} {k.fingerprint}  ({k.source or 'unknown source'})")
    print("accounts:" + ("" if accounts else " none"))
    for a in accounts:
        flags = [a.secret_type, "privileged" if a.privileged else "", "no-change" if not a.can_change else "",
                 f"v{a.version}", "has secret" if a.has_secret else "no secret",
                 "has sudo password" if a.has_become else "", a.last_status]
        print(f"  {a.username:<16} " + "  ".join(f for f in flags if f))
    return 0


def cmd_asset_remove(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset remove."""
    from core.services import inventory as svc

    asset = svc.asset_to_remove(ctx, args.name)
    print(f"asset {asset.name} ({asset.address}:{asset.port}) has {asset.accounts} accounts; removing it deletes "
          "them with their current and earlier secrets from the vault")
    _confirm(f"Remove asset {asset.name}?", args.yes,
             f"not removing asset {asset.name}: confirm on a terminal or pass --yes")
    svc.remove_asset(ctx, args.name)
    print(f"asset {args.name} removed")
    return 0


def cmd_asset_edit(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset edit."""
    from core.services import inventory as svc

    _, outcome = svc.edit_asset(ctx, args.name, address=args.address, port=args.port, platform=args.platform,
                                add_nodes=args.add_node or [], active=args.active, comment=args.comment,
                                database=args.database, tls=args.tls, ca_file=args.ca_file,
                                connect_timeout=args.connect_timeout, command_timeout=args.command_timeout,
                                gateway=args.gateway)
    print(f"asset {args.name} {outcome}")
    return 0


def cmd_asset_trust(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn asset trust: fetch the host's keys, show fingerprints, pin after confirmation."""
    from core.services import inventory as svc

    asset = svc.get_asset(ctx, args.name)
    if is_database(asset.platform):
        svc.fetch_offer(ctx, args.name)  # refuses: a database asset has no SSH host key
    print(f"fetching host keys of {asset.name} ({asset.address}:{asset.port})...")
    offer = svc.fetch_offer(ctx, args.name)
    offered, check, asset = list(offer.offered), offer.check, offer.asset
    if check.already_pinned:
        for key_type, b64 in offered:
            print(f"  {key_type:<22} {fingerprint_sha256(b64)}")
        print(f"these keys are already pinned on {asset.name}; nothing changed")
        return 0
    print("the host offers:")
    for key_type, b64 in offered:
        print(f"  {key_type:<22} {fingerprint_sha256(b64)}")
    if check.changed:
        print(f"\nWARNING: the host key of {asset.name} has CHANGED since it was pinned.", file=sys.stderr)
        print("  pinned now:", file=sys.stderr)
        for key_type, b64 in check.pinned:
            print(f"    {key_type:<22} {fingerprint_sha256(b64)}", file=sys.stderr)
        print("  offered by the host:", file=sys.stderr)
        for key_type, b64 in offered:
            print(f"    {key_type:<22} {fingerprint_sha256(b64)}", file=sys.stderr)
        print("This is exactly how a man-in-the-middle attack would look. Compare the offered fingerprint with the\n"
              "one the host itself reports (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before replacing it.",
              file=sys.stderr)
        if not (args.yes and args.accept_changed):
            if not sys.stdin.isatty():
                raise HostKeyChanged(f"host key of {asset.name} changed; the pinned key was kept. After checking the "
                                     "fingerprint, confirm on a terminal or pass --yes --accept-changed")
            answer = input(f"Replace the pinned key of {asset.name}? Type 'replace' to confirm: ").strip().lower()
            if answer != "replace":
                raise HostKeyChanged(f"host key of {asset.name} changed; not confirmed, the pinned key was kept")
    else:
        what = "this key" if len(offered) == 1 else "these keys"
        _confirm(f"Pin {what}?", args.yes,
                 f"not pinning: no terminal to ask on; check the fingerprint and pass --yes to pin {what}")
    svc.pin_offer(ctx, offer)
    print(f"pinned {plural(len(offered), 'host key')} on {asset.name}")
    return 0


# -- accounts ------------------------------------------------------------------------------------------
def cmd_account_add(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn account add: secrets only from stdin (or a hidden prompt) and key files."""
    from core.services import inventory as svc

    # Core says whether this account needs a TOTP code before any secret is read: without a terminal the
    # code is stdin's line one, the secrets follow it.
    svc.check_account_step_up(ctx, args.asset, args.username, privileged=args.privileged,
                              secret_type="password" if args.password_stdin else "ssh_key")
    stdin = _StdinSecrets()
    passphrase: str | None = None
    if args.password_stdin:
        secret_type, secret = "password", stdin.read("password")
        if args.key_passphrase_stdin:
            raise InputError("--key-passphrase-stdin goes with --key-file, not --password-stdin")
    else:
        secret_type = "ssh_key"
        try:
            secret = Path(args.key_file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--key-file {args.key_file}: cannot read it ({getattr(exc, 'strerror', None) or 'not text'})") from None
        if args.key_passphrase_stdin:
            passphrase = stdin.read("key passphrase")
    become = stdin.read("become (sudo) password") if args.become_password_stdin else None
    outcome = svc.add_account(ctx, args.asset, args.username, secret_type=secret_type, secret=secret,
                              passphrase=passphrase, become=become, privileged=args.privileged,
                              can_change=not args.no_change, key_label=f"--key-file {args.key_file}")
    note = "; the previous secret is kept in its history" if outcome == "updated" else ""
    print(f"account {args.username}@{args.asset} ({secret_type}) {outcome}{note}")
    return 0


def cmd_account_list(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn account list (never secrets)."""
    from core.services import inventory as svc

    accounts = svc.list_accounts(ctx, asset=args.asset)
    if args.json:
        print(json.dumps([account_to_dict(a) for a in accounts], indent=2))
        return 0
    if not accounts:
        print("no accounts")
        return 0
    rows = [[a.asset_name, a.username, a.secret_type, "yes" if a.privileged else "no", "yes" if a.can_change else "no",
             str(a.version), "yes" if a.has_secret else "no", a.last_status or "-"] for a in accounts]
    print(_table(rows, ["ASSET", "USERNAME", "TYPE", "PRIVILEGED", "CHANGE", "VERSION", "SECRET", "STATUS"]))
    return 0


def cmd_account_edit(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn account edit: flags and the become (sudo) password (a new secret is `account add`)."""
    from core.services import inventory as svc

    secret_type = args.type.replace("-", "_") if args.type else None
    become = None
    if args.become_password_stdin:
        # Core asks for a TOTP code before the password is read: without a terminal the code is stdin's line one.
        svc.check_account_step_up(ctx, args.asset, args.username, secret_type=secret_type,
                                  privileged=bool(args.privileged))
        become = _StdinSecrets().read("become (sudo) password")
    outcome = svc.edit_account(ctx, args.asset, args.username, secret_type, privileged=args.privileged,
                               can_change=args.change, become=become, clear_become=args.clear_become_password)
    print(f"account {args.username}@{args.asset} {outcome}")
    return 0


def cmd_account_remove(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn account remove."""
    from core.services import inventory as svc

    secret_type = args.type.replace("-", "_") if args.type else None
    acc = svc.account_to_remove(ctx, args.asset, args.username, secret_type)
    kind, version = acc.secret_type, acc.version
    print(f"account {args.username}@{args.asset} ({kind}, secret version {version}) will be deleted with its current "
          "and earlier secrets from the vault")
    _confirm(f"Remove account {args.username}@{args.asset}?", args.yes,
             f"not removing {args.username}@{args.asset}: confirm on a terminal or pass --yes")
    svc.remove_account(ctx, args.asset, args.username, kind)
    print(f"account {args.username}@{args.asset} ({kind}) removed")
    return 0


# -- nodes ---------------------------------------------------------------------------------------------
def cmd_node_tree(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn node tree: the node tree, each with the number of assets at or below it."""
    from core.services import inventory as svc

    nodes = svc.list_nodes(ctx)
    direct = svc.asset_counts_by_node(ctx)
    assets = svc.list_assets(ctx)
    if not nodes:
        print(f"no nodes ({len(assets)} assets)")
        return 0

    def below(path: str) -> int:
        return sum(1 for a in assets if any(n == path or n.startswith(path + "/") for n in a.nodes))

    for node in nodes:
        depth = node.path.count("/") - 1
        total, here = below(node.path), direct.get(node.path, 0)
        extra = f" ({here} directly)" if here != total else ""
        print(f"{'  ' * depth}{node.name}  {total} asset{'s' if total != 1 else ''}{extra}")
    loose = sum(1 for a in assets if not a.nodes)
    if loose:
        print(f"(no node)  {loose} asset{'s' if loose != 1 else ''}")
    return 0


# -- parser --------------------------------------------------------------------------------------------
def _cmd(sub: argparse._SubParsersAction, name: str, help_: str, description: str, handler: Any,
         permission: str | None = None, quick: Any = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description)
    p.set_defaults(handler=handler, permission=permission)
    if quick is not None:  # tried first by main(); see tui.cli.QuickHandler
        p.set_defaults(quick_handler=quick)
    return p


def _group(sub: argparse._SubParsersAction, name: str, help_: str, description: str) -> argparse._SubParsersAction:
    p = sub.add_parser(name, help=help_, description=description)
    return p.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=type(p))


def _db_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("database connection options (postgresql, mysql, mariadb, redis)")
    g.add_argument("--database", metavar="DB", help="database to connect to (postgresql: default postgres; redis: a number)")
    g.add_argument("--tls", choices=TLS_MODES, help="TLS mode (default disable)")
    g.add_argument("--ca-file", metavar="PATH", help="CA certificate file for --tls require/verify-full (absolute path)")
    g.add_argument("--connect-timeout", type=float, metavar="SECONDS", help="connect timeout (default: configuration's)")
    g.add_argument("--command-timeout", type=float, metavar="SECONDS", help="statement timeout (default: configuration's)")
    g.add_argument("--gateway", metavar="ASSET", help="reach the database through an SSH tunnel via this linux/unix/aix "
                                                      "asset (pinned host key, privileged account); '' removes it")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    p = _cmd(sub, "import", "import an inventory (CSV, keyturn YAML, Ansible) or a known_hosts file",
             "Import nodes, assets and accounts from FILE (format from the extension: .csv, .yaml/.yml for "
             "keyturn or Ansible YAML, anything else Ansible INI), or pin host keys from an OpenSSH known_hosts "
             "file. The whole file is checked first; one bad line rejects it and nothing is written. "
             "See docs/inventory.md.", cmd_import, "edit")
    p.add_argument("file", nargs="?", metavar="FILE", help="the inventory file")
    p.add_argument("--format", choices=FORMATS, help="file format (default: from the file's extension)")
    p.add_argument("--known-hosts", metavar="FILE", help="pin host keys from this known_hosts file onto existing assets")
    p.add_argument("--overwrite-rotated", action="store_true",
                   help="replace secrets keyturn rotated since the file was written (they stay in history)")

    assets = _group(sub, "asset", "add, list, show, edit, remove assets; pin their host keys",
                    "Manage assets (hosts and databases) and their pinned SSH host keys.")
    p = _cmd(assets, "add", "add an asset", "Add an asset. Pin its host key afterwards with `keyturn asset trust`.",
             cmd_asset_add, "edit")
    p.add_argument("name", metavar="NAME", type=_name("asset name"), help="unique asset name")
    p.add_argument("--address", required=True, type=_name("address"), help="host name or IP address")
    p.add_argument("--port", type=_port, help="SSH or database port (default 22; postgresql 5432, mysql/mariadb 3306, "
                                              "redis 6379)")
    p.add_argument("--platform", choices=PLATFORMS + tuple(REJECTED_PLATFORMS), default="linux",
                   help="platform (default linux)")
    _db_options(p)
    p.add_argument("--node", action="append", type=_node_path, metavar="PATH", help="node path such as /prod/db (repeatable)")
    p.add_argument("--inactive", action="store_true", help="add it as inactive (tasks skip it)")
    p.add_argument("--comment", help="free text shown with the asset")

    p = _cmd(assets, "list", "list assets", "List assets, optionally only those under a node.", cmd_asset_list,
             quick=quick_asset_list)
    p.add_argument("--node", metavar="PATH", help="only assets at or below this node")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _cmd(assets, "show", "show one asset", "Show an asset: nodes, pinned host keys with fingerprints, accounts.",
             cmd_asset_show)
    p.add_argument("name", metavar="NAME", help="asset name")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _cmd(assets, "remove", "remove an asset and its accounts",
             "Remove an asset with its accounts, their secrets and history, and its pinned keys.", cmd_asset_remove, "edit")
    p.add_argument("name", metavar="NAME", help="asset name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = _cmd(assets, "edit", "change an asset", "Change an asset's address, port, platform, nodes or state.",
             cmd_asset_edit, "edit")
    p.add_argument("name", metavar="NAME", help="asset name")
    p.add_argument("--address", type=_name("address"), help="new host name or IP address")
    p.add_argument("--port", type=_port, help="new port")
    p.add_argument("--platform", choices=PLATFORMS + tuple(REJECTED_PLATFORMS), help="new platform")
    _db_options(p)
    p.add_argument("--add-node", action="append", type=_node_path, metavar="PATH", help="also put it in this node (repeatable)")
    p.add_argument("--comment", help="new comment")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_true", default=None, help="mark active")
    state.add_argument("--inactive", dest="active", action="store_false", help="mark inactive (tasks skip it)")

    p = _cmd(assets, "trust", "fetch and pin the host's SSH key(s)",
             "Connect to the asset, show the SHA256 fingerprints of the host keys it offers, and pin them after "
             "confirmation. A key different from the pinned one is shown next to it and needs explicit "
             "confirmation (typed on a terminal, or --yes --accept-changed).", cmd_asset_trust, "edit")
    p.add_argument("name", metavar="NAME", help="asset name")
    p.add_argument("--yes", action="store_true", help="pin without asking (first pin, or new key types)")
    p.add_argument("--accept-changed", action="store_true",
                   help="with --yes: also replace a pinned key the host no longer presents (check it first!)")

    accounts = _group(sub, "account", "add, edit, list and remove accounts",
                      "Manage accounts on assets. Secrets are read from stdin or a key file, never from the command line.")
    p = _cmd(accounts, "add", "add an account (or set its secret)",
             "Add an account to an asset, or give an existing one a new secret (the previous one stays in its "
             "history). Secrets come one per line on stdin, in this order: password or key passphrase, then the "
             "become password; on a terminal you are asked without echo.", cmd_account_add, "edit")
    p.add_argument("asset", metavar="ASSET", help="asset name")
    p.add_argument("username", metavar="USERNAME", type=_username,
                   help="account name: letters, digits, '_', '.', '-', starting with a letter or '_' (at most 32)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    how.add_argument("--key-file", metavar="PATH", help="the account's private key file (an ssh_key account)")
    p.add_argument("--key-passphrase-stdin", action="store_true", help="read the key's passphrase from stdin")
    p.add_argument("--privileged", action="store_true", help="keyturn logs in with this account to change others")
    p.add_argument("--no-change", action="store_true", help="never change this account's secret")
    p.add_argument("--become-password-stdin", action="store_true", help="read its sudo (become) password from stdin")

    p = _cmd(accounts, "list", "list accounts (never secrets)", "List accounts; secrets are never shown.", cmd_account_list)
    p.add_argument("--asset", metavar="ASSET", help="only this asset's accounts")
    p.add_argument("--json", action="store_true", help="print JSON (has_secret, never the secret)")

    p = _cmd(accounts, "edit", "change an account's flags or become password",
             "Mark an account privileged or not, changeable or not, or give it a new become (sudo) password or "
             "clear the stored one; its secret stays (give a new one with `account add`).", cmd_account_edit, "edit")
    p.add_argument("asset", metavar="ASSET", help="asset name")
    p.add_argument("username", metavar="USERNAME", help="account name")
    p.add_argument("--type", choices=("password", "ssh-key"), help="which one, when the user has both a password and a key")
    p.add_argument("--privileged", action=argparse.BooleanOptionalAction, default=None,
                   help="keyturn logs in with this account to change others (--no-privileged: not any more)")
    p.add_argument("--change", action=argparse.BooleanOptionalAction, default=None,
                   help="keyturn may change this account's secret (--no-change: never)")
    become = p.add_mutually_exclusive_group()
    become.add_argument("--become-password-stdin", action="store_true",
                        help="read a new sudo (become) password from stdin (one line)")
    become.add_argument("--clear-become-password", action="store_true",
                        help="forget the stored sudo (become) password (for a sudo that asks for none)")

    p = _cmd(accounts, "remove", "remove an account",
             "Remove an account with its secret and secret history.", cmd_account_remove, "edit")
    p.add_argument("asset", metavar="ASSET", help="asset name")
    p.add_argument("username", metavar="USERNAME", help="account name")
    p.add_argument("--type", choices=("password", "ssh-key"), help="which one, when the user has both a password and a key")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    nodes = _group(sub, "node", "show the node tree", "Asset groups (nodes) such as /prod/db.")
    _cmd(nodes, "tree", "print the node tree with asset counts",
         "Print the node tree; each node shows how many assets are at or below it.", cmd_node_tree)
