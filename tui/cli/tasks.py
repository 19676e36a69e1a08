"""keyturn command group: change-secret tasks (create, edit, show, list, preview, copy, delete, activate, run)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

# Only light modules here (`keyturn --help` registers every command); the handlers import core.tasks and
# core.targets, which load the ORM and the drivers.
from core.errors import InputError
from core.params import as_mapping
from core.types import HostParams, TaskSpec
from core.values import KEY_STRATEGIES, is_database
from tui.cli.params import add_param_option, apply_param_args, param_lines
from tui.cli.stdin import without_line_end

if TYPE_CHECKING:
    from core.context import Context

STDIN_ORDER = (
    "Secrets are never taken as arguments. With several --*-stdin flags, standard input is read one line per "
    "secret in this order: the password (--password-stdin), the key passphrase (--key-passphrase-stdin), "
    "the sudo password (--become-password-stdin). On a terminal each is asked for without echo."
)
FILE_HELP = """example:
  keyturn task create web-root --accounts root --node /prod/web --interval 720

task file (--from FILE.toml); secrets never go in it, give them with the --*-stdin flags:
  name = "deploy-keys"
  description = "CI deploy keys"
  accounts = ["deploy", "ci"]          # or "deploy,ci"
  assets = ["web1"]
  nodes = ["/prod"]
  type = "ssh-key"                     # password | ssh-key
  strategy = "random"                  # random | specific
  key_file = "id_deploy"               # a specific private key, relative to the file
  key_strategy = "replace-ours"        # replace-ours | replace-all | append
  key_algorithm = "ed25519"            # ed25519 | rsa4096
  interval = 24                        # hours; or cron = "0 3 * * *"
  start = 2025-01-31T02:00:00Z
  check = true
  active = true
  recipients = ["carol"]
  [rules]                              # random passwords
  length = 24
  lower = true
  upper = true
  digits = true
  symbols = true
  exclude = "lO01"
  [params]                             # see docs/platforms.md
  template = "cisco-ios"               # custom-ssh; or commands and answers, one per line
  settle_delay = 60
  self_change = false
  [host]
  sudo = true
  chpasswd_path = "chpasswd"
  create_user = false
  verify = "ssh"                       # ssh | none
"""
TIME_HELP = "ISO time such as 2025-01-31T02:00:00Z; without a zone it is taken as UTC"


# -- formatting ------------------------------------------------------------------------------------
def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _type_label(secret_type: str) -> str:
    return "ssh-key" if secret_type == "ssh_key" else secret_type


def _schedule(spec: TaskSpec) -> str:
    if spec.interval_hours is not None:
        return f"every {spec.interval_hours} hour{'s' if spec.interval_hours != 1 else ''}"
    if spec.cron:
        return f"cron {spec.cron}"
    return "manual"


def _task_dict(spec: TaskSpec, flags: dict[str, bool] | None = None) -> dict[str, Any]:
    """JSON form of a task: every setting, secrets only as set/unset flags."""
    data: dict[str, Any] = {
        "id": spec.id, "name": spec.name, "description": spec.description, "accounts": spec.usernames,
        "assets": spec.assets, "nodes": spec.nodes, "type": _type_label(spec.secret_type),
        "strategy": spec.secret_strategy, "key_strategy": spec.ssh_key_strategy, "key_algorithm": spec.key_algorithm,
        "rules": spec.rules.to_dict(), "host": spec.params.to_dict(), "interval_hours": spec.interval_hours,
        "cron": spec.cron, "start_at": _iso(spec.start_at), "check_after_change": spec.check_after_change,
        "active": spec.active, "recipients": spec.recipients, "params": as_mapping(spec.params), "next_run_at": _iso(spec.next_run_at),
        "created_at": _iso(spec.created_at), "updated_at": _iso(spec.updated_at),
    }
    if flags is not None:
        data["specific_secret_set"] = flags["specific_secret"]
        data["key_passphrase_set"] = flags["specific_passphrase"]
        data["become_password_set"] = flags["become_password"]
    return data


# -- reading options -------------------------------------------------------------------------------
def _read_secret(prompt: str, flag: str) -> str:
    """One secret line from stdin (a prompt without echo on a terminal)."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{prompt}: ")
    line = sys.stdin.readline()
    if not line:
        raise InputError(f"{flag}: expected a line on standard input, got end of input")
    return without_line_end(line)


def _stdin_secrets(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    if args.password_stdin:
        out["password"] = _read_secret("Password", "--password-stdin")
    if args.key_passphrase_stdin:
        out["passphrase"] = _read_secret("Key passphrase", "--key-passphrase-stdin")
    if args.become_password_stdin:
        out["become"] = _read_secret("Sudo password", "--become-password-stdin")
    return out


def _changes_from_args(args: argparse.Namespace, current: TaskSpec | None) -> dict[str, Any]:
    """TaskSpec fields the options set (only those given), secrets read from stdin last."""
    from core import tasks as core_tasks

    # The flags in the words of a task file; core.tasks.task_changes is the one mapper from those to a TaskSpec.
    data: dict[str, Any] = {}
    if getattr(args, "no_assets", False):
        data["assets"] = []
    if getattr(args, "no_nodes", False):
        data["nodes"] = []
    for key, items in (("assets", args.asset), ("nodes", args.node), ("recipients", args.recipient)):
        if items is not None:
            data[key] = ",".join(items)
    if args.accounts is not None:
        data["accounts"] = args.accounts
    for key, value in (("type", args.type), ("strategy", args.strategy), ("key_strategy", args.key_strategy),
                       ("key_algorithm", args.key_algorithm), ("description", args.description),
                       ("check", args.check), ("active", args.active), ("interval", args.interval),
                       ("cron", args.cron), ("start", args.start), ("key_file", args.key_file)):
        if value is not None:
            data[key] = value
    rules = {k: v for k, v in (("length", args.length), ("lower", args.lower), ("upper", args.upper),
                               ("digits", args.digits), ("symbols", args.symbols), ("exclude", args.exclude))
             if v is not None}
    if rules:
        data["rules"] = rules
    host = {k: v for k, v in (("sudo", args.sudo), ("chpasswd_path", args.chpasswd_path),
                              ("create_user", args.create_user)) if v is not None}
    if host:
        data["host"] = host
    if args.password_stdin and args.key_file:
        raise InputError("give either --password-stdin or --key-file, not both")
    ch = core_tasks.task_changes(data, current or TaskSpec(name="", usernames=[]))
    if getattr(args, "no_schedule", False):  # a schedule given with it still wins, as before
        ch = {"interval_hours": None, "cron": None, "start_at": None, **ch}
    given = apply_param_args(ch.get("params", current.params if current else HostParams()), args.param)
    if given is not None:
        ch["params"] = given

    secrets = _stdin_secrets(args)
    if "password" in secrets:
        ch["specific_secret"] = secrets["password"]
        ch.setdefault("secret_strategy", "specific")
        ch["specific_passphrase"] = None
        if ch.get("secret_type", current.secret_type if current else "password") != "password":
            raise InputError("--password-stdin: the task's type is ssh-key; give --key-file instead")
    if "passphrase" in secrets:
        ch["specific_passphrase"] = secrets["passphrase"] or None
    if "become" in secrets:
        ch["become_password"] = secrets["become"]
    return ch


# -- handlers --------------------------------------------------------------------------------------
def _cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    if args.from_file:
        base = core_tasks.load_task_file(args.from_file)
        if args.name:
            base.name = args.name
    else:
        if not args.name:
            raise InputError("name: give the task a name (or --from FILE.toml)")
        base = TaskSpec(name=args.name, usernames=[])
    changes = _changes_from_args(args, base)
    spec = dataclasses.replace(base, **changes)
    saved = core_tasks.create_task(ctx, spec)
    _print_saved(ctx, "created", saved)
    return 0


def _cmd_edit(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    current = core_tasks.get_task(ctx, args.name)
    changes = _changes_from_args(args, current)
    if args.rename:
        changes["name"] = args.rename
    if not changes:
        raise InputError("edit: nothing to change (give at least one option; see keyturn task edit --help)")
    saved = core_tasks.edit_task(ctx, args.name, **changes)
    _print_saved(ctx, "updated", saved)
    return 0


def _print_saved(ctx: Context, verb: str, spec: TaskSpec) -> None:
    from core.targets import visible_preview

    line = f"task {spec.name} {verb}"
    if spec.next_run_at:
        line += f"; next run {_when(spec.next_run_at)}"
    print(line)
    print(f"targets: {visible_preview(ctx, spec).summary()}")


def _cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    spec = core_tasks.get_task(ctx, args.name)
    flags = core_tasks.secrets_set(ctx, args.name)
    runs = core_tasks.upcoming_runs(spec, 3)
    if args.json:
        data = _task_dict(spec, flags)
        data["next_runs"] = [_iso(r) for r in runs]
        print(json.dumps(data, indent=2))
        return 0
    is_key = spec.secret_type == "ssh_key"
    rows: list[tuple[str, str]] = [
        ("name", spec.name), ("description", spec.description or "-"), ("accounts", ", ".join(spec.usernames)),
        ("assets", ", ".join(spec.assets) or "-"), ("nodes", ", ".join(spec.nodes) or "-"),
        ("type", _type_label(spec.secret_type)), ("strategy", spec.secret_strategy),
    ]
    if spec.secret_strategy == "specific":
        if is_key:
            rows.append(("specific private key", "set" if flags["specific_secret"] else "not set"))
            rows.append(("key passphrase", "set" if flags["specific_passphrase"] else "not set"))
        else:
            rows.append(("specific password", "set" if flags["specific_secret"] else "not set"))
    elif is_key:
        rows.append(("key algorithm", spec.key_algorithm))
    else:
        r = spec.rules
        classes = [c for c in ("lower", "upper", "digits", "symbols") if getattr(r, c)]
        rows.append(("password rules", f"length {r.length}, {', '.join(classes)}"
                     + (f", excluding {r.exclude!r}" if r.exclude else "")))
    if is_key:
        rows.append(("key strategy", spec.ssh_key_strategy))
    p = spec.params
    rows += [
        ("sudo", "yes" if p.use_sudo else "no"), ("sudo password", "set" if flags["become_password"] else "not set"),
        ("chpasswd path", p.chpasswd_path), ("create user", "yes" if p.create_user else "no"),
        ("check after change", "yes" if spec.check_after_change else "no"),
        ("schedule", _schedule(spec)), ("start", _when(spec.start_at) if spec.start_at else "-"),
        ("active", "yes" if spec.active else "no"), ("recipients", ", ".join(spec.recipients) or "-"),
    ]
    if spec.periodic:
        rows.append(("next runs", ", ".join(_when(r) for r in runs) if runs else "- (inactive)"))
    rows += [("created", _when(spec.created_at)), ("updated", _when(spec.updated_at))]
    # "key: value" with one space, unaligned, so scripts can grep e.g. "specific password: set".
    for key, value in rows:
        print(f"{key}: {value}")
    for line in param_lines(spec.params):  # `param KEY: VALUE`, a multi-line value's further lines indented
        print(line)
    return 0


def _cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    specs = core_tasks.list_tasks(ctx)
    if args.json:
        print(json.dumps([_task_dict(s) for s in specs], indent=2))
        return 0
    if not specs:
        print("no tasks (create one with: keyturn task create NAME --accounts USER --asset ASSET)")
        return 0
    header = ("NAME", "TYPE", "STRATEGY", "ACCOUNTS", "TARGETS", "SCHEDULE", "ACTIVE", "NEXT RUN")
    table = [header] + [
        (s.name, _type_label(s.secret_type), s.secret_strategy, ",".join(s.usernames),
         ",".join([*s.nodes, *s.assets]), _schedule(s), "yes" if s.active else "no",
         _when(s.next_run_at) if s.next_run_at else "-")
        for s in specs
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _cmd_preview(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks
    from core.targets import target_note, visible_preview

    spec = core_tasks.get_task(ctx, args.name)
    result = visible_preview(ctx, spec)
    if args.json:
        print(json.dumps({
            "task": spec.name, "summary": result.summary(),
            "targets": [dataclasses.asdict(t) for t in result.targets],
            "excluded": [dataclasses.asdict(e) for e in result.excluded],
        }, indent=2))
        return 0
    print(result.summary())
    if result.targets:
        print("\nwill change:")
        for t in result.targets:
            note = target_note(t, spec)
            print(f"  {t.asset_name}  {t.address}:{t.port}  {t.username}" + (f"  [{t.platform}: {note}]" if note else "")
                  + ("  (privileged)" if t.privileged else "")
                  + ("" if t.host_key_pinned else f"  NO PINNED HOST KEY: fails until `keyturn asset trust {t.asset_name}`")
                  + ("  (self-change)" if t.self_change else ""))
    if result.excluded:
        print("\nexcluded:")
        for e in result.excluded:
            tag = f"[{e.platform}]  " if is_database(e.platform) else ""  # hosts read as they always did
            print(f"  {e.asset_name}  {tag}{e.username}: {e.reason}")
    return 0


def _cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    core_tasks.get_task(ctx, args.name)  # a missing task is reported before asking
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError(f"delete: not deleting task {args.name!r} without --yes (no terminal to confirm on)")
        answer = input(f"Delete task {args.name!r}? Its executions and records are kept. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("not deleted")
            return 1
    core_tasks.delete_task(ctx, args.name)
    print(f"task {args.name} deleted")
    return 0


def _cmd_copy(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    saved = core_tasks.copy_task(ctx, args.name, args.new_name)
    _print_saved(ctx, f"copied from {args.name}", saved)
    return 0


def _cmd_activate(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    spec = core_tasks.set_active(ctx, args.name, True)
    print(f"task {spec.name} active" + (f"; next run {_when(spec.next_run_at)}" if spec.next_run_at else ""))
    return 0


def _cmd_deactivate(ctx: Context, args: argparse.Namespace) -> int:
    from core import tasks as core_tasks

    spec = core_tasks.set_active(ctx, args.name, False)
    print(f"task {spec.name} inactive; it will not run on schedule")
    return 0


def _cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from tui.cli.records import cmd_task_run  # lives with the other execution commands

    return cmd_task_run(ctx, args)


# -- parser ----------------------------------------------------------------------------------------
def _add_task_options(p: argparse.ArgumentParser, *, edit: bool) -> None:
    """Options shared by create and edit; every default is None so an edit changes only what is given."""
    what = p.add_argument_group("accounts and targets")
    what.add_argument("--accounts", metavar="U1,U2", help="user names to change, comma separated"
                      + (" (replaces the list)" if edit else ""))
    what.add_argument("--asset", action="append", metavar="ASSET", help="an asset to cover (repeat or comma separate)"
                      + ("; replaces the task's assets" if edit else ""))
    what.add_argument("--node", action="append", metavar="/PATH", help="a node: every asset below it is covered"
                      + ("; replaces the task's nodes" if edit else ""))
    if edit:
        what.add_argument("--no-assets", action="store_true", help="remove every directly chosen asset")
        what.add_argument("--no-nodes", action="store_true", help="remove every chosen node")
        what.add_argument("--rename", metavar="NEW_NAME", help="give the task a new name")

    sec = p.add_argument_group("secret", STDIN_ORDER)
    sec.add_argument("--type", choices=("password", "ssh-key"), help="what to change (default: password)")
    sec.add_argument("--strategy", choices=("random", "specific"),
                     help="random: a new secret per account; specific: the one you give (default: random, or "
                          "specific when a password or key is given)")
    sec.add_argument("--password-stdin", action="store_true", help="read the specific password from stdin")
    sec.add_argument("--key-file", metavar="PATH", help="the specific private key (OpenSSH or PEM) to push")
    sec.add_argument("--key-passphrase-stdin", action="store_true", help="read the key's passphrase from stdin")
    sec.add_argument("--key-strategy", choices=KEY_STRATEGIES,
                     help="replace-ours: remove only keys keyturn pushed, then add (default); replace-all: empty "
                          "authorized_keys first; append: only add")
    sec.add_argument("--key-algorithm", choices=("ed25519", "rsa4096"), help="for random keys (default: ed25519)")

    rules = p.add_argument_group("password rules (random passwords)")
    rules.add_argument("--length", type=int, metavar="N", help="8 to 128 (default: 24)")
    for cls in ("lower", "upper", "digits", "symbols"):
        rules.add_argument(f"--{cls}", dest=cls, action=argparse.BooleanOptionalAction, default=None,
                           help=f"use {cls} (default: yes)")
    rules.add_argument("--exclude", metavar="CHARS", help="characters never to use (e.g. 'l1O0')")

    sched = p.add_argument_group("schedule")
    when = sched.add_mutually_exclusive_group()
    when.add_argument("--interval", type=int, metavar="HOURS", help="run every HOURS hours")
    when.add_argument("--cron", metavar='"m h dom mon dow"', help="run on a five-field cron line (UTC)")
    if edit:
        when.add_argument("--no-schedule", action="store_true", help="remove the schedule (manual runs only)")
    sched.add_argument("--start", metavar="TIME", help=f"first scheduled run; {TIME_HELP}")
    state = sched.add_mutually_exclusive_group()
    state.add_argument("--inactive", dest="active", action="store_const", const=False, default=None,
                       help="save the task inactive (it will not run on schedule)")
    state.add_argument("--active", dest="active", action="store_const", const=True, help="save the task active")

    host = p.add_argument_group("hosts")
    host.add_argument("--sudo", dest="sudo", action=argparse.BooleanOptionalAction, default=None,
                      help="change secrets through sudo when the login account is not root (default: yes)")
    host.add_argument("--become-password-stdin", action="store_true", help="read the sudo password from stdin")
    host.add_argument("--chpasswd-path", metavar="P", help="chpasswd command on the hosts (default: chpasswd)")
    host.add_argument("--create-user", dest="create_user", action=argparse.BooleanOptionalAction, default=None,
                      help="create the account on a host that lacks it (default: no)")
    add_param_option(p.add_argument_group("parameters (custom-ssh sequences, self-change, user parameters)"))

    other = p.add_argument_group("other")
    other.add_argument("--check", dest="check", action=argparse.BooleanOptionalAction, default=None,
                       help="log in with the new secret after the change (default: yes)")
    other.add_argument("--description", metavar="TEXT", help="what the task is for")
    other.add_argument("--recipient", action="append", metavar="OPERATOR",
                       help="operator mailed the results (repeat)" + ("; replaces the list" if edit else ""))


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    task = sub.add_parser("task", help="change-secret tasks: create, edit, preview, run",
                          description="Create, inspect and run change-secret tasks.")
    cmds = task.add_subparsers(dest="task_command", metavar="SUBCOMMAND", parser_class=type(task))

    p = cmds.add_parser("create", help="create a task", description="Create a change-secret task. " + STDIN_ORDER,
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=FILE_HELP)
    p.add_argument("name", nargs="?", metavar="NAME", help="task name (optional with --from: overrides the file's)")
    p.add_argument("--from", dest="from_file", metavar="FILE.toml",
                   help="read the task from a TOML file; options given here override it")
    _add_task_options(p, edit=False)
    p.set_defaults(handler=_cmd_create, permission="edit")

    p = cmds.add_parser("edit", help="change a task", description="Change the given settings of a task; the rest "
                        "stay as they are. " + STDIN_ORDER)
    p.add_argument("name", metavar="NAME", help="task name")
    _add_task_options(p, edit=True)
    p.set_defaults(handler=_cmd_edit, permission="edit")

    p = cmds.add_parser("show", help="show a task (never its secrets)",
                        description="Show a task's settings and next run times; secrets show only as set or not set.")
    p.add_argument("name", metavar="NAME", help="task name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_show)

    p = cmds.add_parser("list", help="list tasks", description="List every task with its schedule and next run.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_list)

    p = cmds.add_parser("preview", help="show which accounts a task would change",
                        description="List the accounts a run would change now, and the ones left out with the reason.")
    p.add_argument("name", metavar="NAME", help="task name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_preview)

    p = cmds.add_parser("delete", help="delete a task", description="Delete a task; its executions and records are "
                        "kept. Asks for confirmation on a terminal; elsewhere --yes is required.")
    p.add_argument("name", metavar="NAME", help="task name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=_cmd_delete, permission="edit")

    p = cmds.add_parser("copy", help="copy a task under a new name",
                        description="Create a new task with every setting and secret of an existing one.")
    p.add_argument("name", metavar="NAME", help="task to copy")
    p.add_argument("new_name", metavar="NEW", help="name of the copy")
    p.set_defaults(handler=_cmd_copy, permission="edit")

    p = cmds.add_parser("activate", help="let a task run on its schedule",
                        description="Activate a task; a periodic one is due at its next slot (start time, cron time or one interval from now).")
    p.add_argument("name", metavar="NAME", help="task name")
    p.set_defaults(handler=_cmd_activate, permission="edit")

    p = cmds.add_parser("deactivate", help="stop a task running on its schedule",
                        description="Deactivate a task; it can still be run by hand.")
    p.add_argument("name", metavar="NAME", help="task name")
    p.set_defaults(handler=_cmd_deactivate, permission="edit")

    p = cmds.add_parser("run", help="run a task now", description="Run a task now and wait for it to finish; "
                        "the exit code tells whether every account changed.")
    p.add_argument("name", metavar="NAME", help="task name")
    p.add_argument("--json", action="store_true", help="print the execution result as JSON")
    p.add_argument("--no-reconcile", action="store_true",
                   help="do not settle unfinished records of earlier runs before starting")
    p.add_argument("--workers", action="store_true",
                   help="queue the run for `keyturn worker` processes (any machine sharing the database and the "
                        "master key) and follow it here until it finished; Ctrl-C asks the workers to start no "
                        "further account; the workers mail the report")
    p.set_defaults(handler=_cmd_run, permission="run")
