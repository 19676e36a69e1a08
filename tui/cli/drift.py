"""keyturn commands of issue 16: heartbeats, record actions, an operator's age key, and a task's drift options.

`heartbeat` is a group of its own; the rest are added to the existing `records`, `operator` and `task create|edit`
parsers, so each stays one command for the person typing it. Every command is one call into core.

Exit codes: `heartbeat run` 0 only when every account is ok, 1 otherwise; usage errors 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from core.errors import InputError
from core.types import HEARTBEAT_STATUSES, DependencyStep, HeartbeatInfo

if TYPE_CHECKING:
    from core.context import Context


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    # argparse keeps a group's subcommands on a private action; finding it lets this module extend the existing
    # `records`, `operator` and `task` groups without editing their modules (other work changes them meanwhile).
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001


# -- heartbeat -------------------------------------------------------------------------------------------
def _beat_dict(h: HeartbeatInfo) -> dict[str, Any]:
    return {"account_id": h.account_id, "asset": h.asset_name, "account": h.username, "status": h.status,
            "reason": h.reason, "checked_at": h.checked_at.isoformat()}


def _print_beats(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no heartbeat results")
        return
    table = [("ASSET", "ACCOUNT", "STATUS", "CHECKED", "REASON")]
    table += [(r["asset"], r["account"], r["status"], r["checked_at"][:19].replace("T", " "), r["reason"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])


def _cmd_heartbeat_run(ctx: Context, args: argparse.Namespace) -> int:
    from core.heartbeat import run_heartbeat

    report = run_heartbeat(ctx, args.task, reconcile=True if args.reconcile else None)
    rows = [{"asset": r.asset_name, "account": r.username, "status": r.status, "reason": r.reason,
             "checked_at": r.checked_at.isoformat(), "account_id": r.account_id} for r in report.results]
    if args.json:
        print(json.dumps({"task": report.task_name, "all_ok": report.all_ok, "counts": report.counts(),
                          "results": rows, "reconcile_execution": report.reconciled.id if report.reconciled else None},
                         indent=2))
    else:
        _print_beats(rows)
        print(", ".join(f"{n} {s}" for s, n in report.counts().items()))
        if report.reconciled is not None:
            r = report.reconciled
            print(f"reconciled in execution {r.id}: {r.succeeded} succeeded, {r.failed} failed, {r.unverified} unverified")
    return 0 if report.all_ok else 1


def _cmd_heartbeat_list(ctx: Context, args: argparse.Namespace) -> int:
    from core.heartbeat import latest

    rows = [_beat_dict(h) for h in latest(ctx, args.status)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_beats(rows)
    return 0


# -- records ---------------------------------------------------------------------------------------------
def _cmd_ignore(ctx: Context, args: argparse.Namespace) -> int:
    from core.record_actions import set_ignored

    ids = set_ignored(ctx, args.ids, args.records_command == "ignore")
    print(f"{'ignored' if args.records_command == 'ignore' else 'unignored'}: {', '.join(map(str, ids))}")
    return 0


def _cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from core.record_actions import verify_record

    worst = 0
    for rid in dict.fromkeys(args.ids):
        o = verify_record(ctx, rid)
        print(f"record {o.record_id}: new secret {o.new}, old secret {o.old}; status {o.status}"
              + (f" ({o.note})" if o.note else ""))
        worst = max(worst, 0 if o.status == "success" else 1)
    return worst


def _cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    from core.mfa import MfaSession
    from core.record_actions import restore_record
    from tui.cli.operators import ask_code

    mfa = MfaSession(ctx.settings)
    # The code comes from the terminal (no echo) or one line of stdin, never from the command line.
    mfa.unlock(ctx, ask_code(ctx.operator))
    restore_record(ctx, mfa, args.id)
    print(f"record {args.id}: its new secret is now the account's current one")
    return 0


def _cmd_dependencies_retry(ctx: Context, args: argparse.Namespace) -> int:
    from core.dependencies import retry_dependencies

    worst = 0
    for rid in dict.fromkeys(args.ids):
        warning = retry_dependencies(ctx, rid)
        print(f"record {rid}: dependency steps " + (f"failed: {warning}" if warning else "ok"))
        worst = max(worst, 1 if warning else 0)
    return worst


# -- operator --------------------------------------------------------------------------------------------
def _cmd_set_age_key(ctx: Context, args: argparse.Namespace) -> int:
    from core.handover import set_age_key
    from core.operators import require

    require(ctx, "edit")
    if args.clear:
        set_age_key(ctx, args.name, None)
        print(f"operator {args.name}: age key removed")
        return 0
    text = sys.stdin.read().strip()
    if not text:
        raise InputError("age key: give the public key on stdin (age1... or an ssh-ed25519 line)")
    set_age_key(ctx, args.name, text)
    print(f"operator {args.name}: age key stored; tasks with --send-secrets will encrypt new secrets to it")
    return 0


# -- task create / edit options --------------------------------------------------------------------------


def _add_option_arguments(p: argparse.ArgumentParser, edit: bool) -> None:
    g = p.add_argument_group("drift, windows, retries, dependencies, hand-over")
    beat = g.add_mutually_exclusive_group()
    beat.add_argument("--heartbeat-interval", type=int, metavar="HOURS", help="check every account's login every HOURS")
    beat.add_argument("--heartbeat-cron", metavar='"m h dom mon dow"', help="check logins on a cron line (UTC)")
    if edit:
        beat.add_argument("--no-heartbeat", action="store_true", help="remove the heartbeat schedule")
    g.add_argument("--window", action="append", metavar='"Mon-Fri 01:00-05:00 Europe/Berlin"',
                   help="allowed change window (repeat; the scheduler starts runs only inside one)"
                        + ("; replaces the list" if edit else ""))
    if edit:
        g.add_argument("--no-windows", action="store_true", help="remove every window (changes allowed any time)")
    g.add_argument("--retries", type=int, metavar="N", help="retry failed accounts up to N times (default: 0)")
    g.add_argument("--retry-delay", type=int, metavar="MINUTES", help="wait between retries (default: 0)")
    g.add_argument("--send-secrets", dest="send_secrets", action=argparse.BooleanOptionalAction, default=None,
                   help="mail each recipient with an age key the run's new secrets, encrypted to that key")
    g.add_argument("--reconcile-drift", dest="reconcile_drift", action=argparse.BooleanOptionalAction, default=None,
                   help="after a heartbeat, give accounts that rejected the vault's secret a new one (privileged push)")
    g.add_argument("--dependency", action="append", nargs=3, metavar=("ASSET", "RUN_ON", "COMMAND"),
                   help="after a change on ASSET (or * for any), run COMMAND as root on RUN_ON (- for the same "
                        "asset) with the new password on stdin (repeat)" + ("; replaces the list" if edit else ""))
    if edit:
        g.add_argument("--no-dependencies", action="store_true", help="remove every dependency step")


def _option_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.heartbeat_interval is not None:
        changes.update(heartbeat_interval_hours=args.heartbeat_interval, heartbeat_cron=None)
    if args.heartbeat_cron is not None:
        changes.update(heartbeat_cron=args.heartbeat_cron, heartbeat_interval_hours=None)
    if getattr(args, "no_heartbeat", False):
        changes.update(heartbeat_cron=None, heartbeat_interval_hours=None)
    if args.window is not None:
        changes["windows"] = list(args.window)
    if getattr(args, "no_windows", False):
        changes["windows"] = []
    if args.retries is not None:
        changes["retries"] = args.retries
    if args.retry_delay is not None:
        changes["retry_delay_minutes"] = args.retry_delay
    if args.send_secrets is not None:
        changes["send_secrets"] = args.send_secrets
    if args.reconcile_drift is not None:
        changes["reconcile_drift"] = args.reconcile_drift
    if args.dependency is not None:
        changes["dependencies"] = [DependencyStep(asset=a, run_on="" if r == "-" else r, command=c)
                                   for a, r, c in args.dependency]
    if getattr(args, "no_dependencies", False):
        changes["dependencies"] = []
    return changes


def _precheck(ctx: Context, changes: dict[str, Any]) -> None:
    """Check the options that need no task before the task is written, so a bad one leaves nothing behind."""
    from core.schedule import validate_schedule
    from core.windows import parse_windows

    try:
        validate_schedule(changes.get("heartbeat_interval_hours"), changes.get("heartbeat_cron"))
    except InputError as exc:
        raise InputError(f"heartbeat {exc}") from None
    parse_windows(changes.get("windows", []))
    for name, key in (("retries", "retries"), ("retry delay", "retry_delay_minutes")):
        if key in changes and changes[key] < 0:
            raise InputError(f"{name}: must not be negative")


def _with_options(handler, create: bool):  # type: ignore[no-untyped-def]
    """Wrap `task create|edit`: the task's own settings first, then its options (both checked first)."""

    def run(ctx: Context, args: argparse.Namespace) -> int:
        from core.task_options import set_options

        changes = _option_changes(args)
        if not changes:
            return handler(ctx, args)
        _precheck(ctx, changes)
        code = 0
        if create or _task_settings_given(ctx, args):
            code = handler(ctx, args)
            if code != 0:
                return code
        name = getattr(args, "rename", None) or args.name
        if create and not name:
            from core.tasks import load_task_file

            name = load_task_file(args.from_file).name
        opts = set_options(ctx, name, **changes)
        parts = []
        if opts.heartbeat_scheduled:
            every = f"every {opts.heartbeat_interval_hours}h" if opts.heartbeat_interval_hours else opts.heartbeat_cron
            parts.append(f"heartbeat {every}")
        if opts.windows:
            parts.append("windows " + "; ".join(opts.windows))
        if opts.retries:
            parts.append(f"{opts.retries} retries, {opts.retry_delay_minutes} min apart")
        if opts.send_secrets:
            parts.append("encrypted hand-over on")
        if opts.reconcile_drift:
            parts.append("drift reconciled")
        if opts.dependencies:
            parts.append(f"{len(opts.dependencies)} dependency step(s)")
        print(f"task {name} options: " + (", ".join(parts) or "none"))
        return code

    return run


def _task_settings_given(ctx: Context, args: argparse.Namespace) -> bool:
    """Whether `task edit` was given any of the task's own settings (else only options change)."""
    from core.tasks import get_task
    from tui.cli import tasks as task_cli

    # The task module's own reading of its arguments decides, so the two never disagree.
    return bool(task_cli._changes_from_args(args, get_task(ctx, args.name))) or bool(getattr(args, "rename", None))  # noqa: SLF001


# -- registration ----------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    """Add the heartbeat group, and extend the records, operator and task groups."""
    hb = sub.add_parser("heartbeat", help="check logins with the vault's current secrets (drift)",
                        description="Log in with each account's current secret from the vault, change nothing, and "
                                    "record ok, rejected, locked or unreachable.")
    cmds = hb.add_subparsers(dest="heartbeat_command", metavar="SUBCOMMAND", parser_class=type(hb), required=True)
    p = cmds.add_parser("run", help="check every target account of a task now (exit 0 only when all are ok)")
    p.add_argument("task", metavar="TASK")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--reconcile", action="store_true",
                   help="give rejected accounts a new secret now (default: the task's --reconcile-drift option)")
    p.set_defaults(handler=_cmd_heartbeat_run, permission="run")
    p = cmds.add_parser("list", help="the latest heartbeat result of each account")
    p.add_argument("--status", choices=HEARTBEAT_STATUSES, help="only accounts with this status")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_heartbeat_list)

    records = _subcommands(sub.choices["records"])
    for name, text in (("ignore", "take failed/unverified records off the needs-attention list"),
                       ("unignore", "put ignored records back on the needs-attention list")):
        p = records.add_parser(name, help=text)
        p.add_argument("ids", nargs="+", type=int, metavar="ID")
        p.set_defaults(handler=_cmd_ignore, permission="edit")
    p = records.add_parser("verify", help="log in now with a failed/unverified record's secrets (settles unverified)")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.set_defaults(handler=_cmd_verify, permission="run")
    p = records.add_parser("restore", help="make a record's new secret current (TOTP code from the terminal or stdin)")
    p.add_argument("id", type=int, metavar="ID")
    p.set_defaults(handler=_cmd_restore, permission="reveal")
    p = records.add_parser("retry-dependencies", help="run a successful record's dependency steps again")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.set_defaults(handler=_cmd_dependencies_retry, permission="run")

    operator = _subcommands(sub.choices["operator"])
    p = operator.add_parser("set-age-key", help="store an operator's age public key (read from stdin)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--clear", action="store_true", help="remove the key instead")
    p.set_defaults(handler=_cmd_set_age_key)

    task = _subcommands(sub.choices["task"])
    for name in ("create", "edit"):
        p = task.choices[name]
        _add_option_arguments(p, edit=name == "edit")
        p.set_defaults(handler=_with_options(p.get_default("handler"), create=name == "create"))
