"""keyturn command groups: `operator` (people and their TOTP enrolment), `reveal` (secrets after a code), `audit`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING

# Only light modules here (`keyturn --help` registers every command); the handlers import core.operators,
# core.mfa, core.reveal and core.audit, which load the ORM.
from core.errors import InputError

if TYPE_CHECKING:
    from core.context import Context
    from core.reveal import RevealedSecret


def register(sub: argparse._SubParsersAction) -> None:
    """Add `operator`, `reveal` and `audit`."""
    _register_operator(sub)
    _register_reveal(sub)
    _register_audit(sub)


# -- operator --------------------------------------------------------------------------------------
def _register_operator(sub: argparse._SubParsersAction) -> None:
    op = sub.add_parser("operator", help="manage operators and their TOTP enrolment",
                        description="Operators are the people who may run tasks and, after a TOTP code, see secrets. "
                        "Once one operator has confirmed enrolment, managing operators needs a code from the acting one.")
    op_sub = op.add_subparsers(dest="operator_command", metavar="ACTION", required=True)

    add = op_sub.add_parser("add", help="add an operator (they enrol their own phone)",
                            description="Create an operator. You never see their TOTP seed: the person runs "
                            "`keyturn operator enrol` at their own terminal, scans the QR code and confirms it with a "
                            "first code. Until then they cannot run, edit or reveal.")
    add.add_argument("name", metavar="NAME", help="login name of the person")
    add.add_argument("--email", required=True, metavar="ADDR", help="their email address (for notifications)")
    _otp_option(add)
    add.set_defaults(handler=cmd_add)

    enrol = op_sub.add_parser("enrol", help="enrol your own phone: QR code, then a first code",
                              description="Enrol your own second factor (as the operator you act as; under sudo the "
                              "user sudo names): print a fresh TOTP QR code and otpauth:// URI, then ask for a first "
                              "code on the terminal. Without a terminal the code is confirmed later with "
                              "`keyturn operator confirm NAME`.")
    enrol.set_defaults(handler=cmd_enrol)

    confirm = op_sub.add_parser("confirm", help="confirm an enrolment with a code from the phone",
                                description="Confirm an operator's TOTP enrolment with a current 6-digit code.")
    confirm.add_argument("name", metavar="NAME", help="operator name (yourself, once operators are enforced)")
    confirm.add_argument("code", metavar="CODE", nargs="?", help=argparse.SUPPRESS)
    confirm.set_defaults(handler=cmd_confirm)

    lst = op_sub.add_parser("list", help="list operators", description="List operators (never their TOTP secrets).")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    lst.set_defaults(handler=cmd_list)

    rm = op_sub.add_parser("remove", help="remove an operator", description="Remove an operator; their audit events stay.")
    rm.add_argument("name", metavar="NAME", help="operator name")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _otp_option(rm)
    rm.set_defaults(handler=cmd_remove)

    scope = op_sub.add_parser("scope", help="limit an operator to node subtrees (listings included)",
                              description="Limit an operator to the assets in or below these nodes, in every "
                              "command and listing; --clear lifts the limit.")
    scope.add_argument("name", metavar="NAME", help="operator name")
    scope.add_argument("--node", action="append", default=[], metavar="PATH", help="a node path (repeatable)")
    scope.add_argument("--clear", action="store_true", help="no limit")
    _otp_option(scope)
    scope.set_defaults(handler=cmd_scope)

    reset = op_sub.add_parser("reset-mfa", help="drop an operator's TOTP secret (lost phone)",
                              description="Drop an operator's TOTP secret; the person enrols a new phone at their own "
                              "terminal (`keyturn operator enrol`) before they may act again.")
    reset.add_argument("name", metavar="NAME", help="operator name")
    _otp_option(reset)
    reset.set_defaults(handler=cmd_reset_mfa)


NEW_CODE_FORM = ("a TOTP code is never an argument (every user sees arguments in ps): type it when keyturn asks, "
                 "or give it as one line on stdin, e.g. printf '%s\\n' \"$CODE\" | keyturn reveal web1 app --reason T-123")


class _RefuseOtp(argparse.Action):
    """`--otp VALUE` is refused with the new form; the value is never used."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]  # noqa: ANN001
        parser.exit(2, f"keyturn: error: --otp is refused: {NEW_CODE_FORM}\n")


def _otp_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--otp", metavar="CODE", action=_RefuseOtp, help=argparse.SUPPRESS)


def ask_code(operator: str | None) -> str:
    """A TOTP code from the terminal without echo, or one line of stdin when it is not a terminal."""
    prompt = f"TOTP code for {operator or 'operator'}: "
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        raise InputError("a TOTP code is needed: type it in a terminal, or give it as one line on stdin")
    return line.strip()


def ask_reason() -> str:
    """Why a secret is revealed (ticket id or text), asked on the terminal."""
    if sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty():
        print("reason for this reveal (ticket id or text): ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip()
    return ""


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    """Add an operator; they enrol their own phone (core asks for the admin's step-up)."""
    from core import operators as ops

    info = ops.add_operator(ctx, args.name, args.email)
    print(f"operator {info.name} added; {info.name} now enrols their phone at their own terminal: "
          f"{ops.ENROL_HINT}")
    return 0


def cmd_enrol(ctx: Context, args: argparse.Namespace) -> int:
    """Enrol the acting operator's phone: QR code and URI, then a first code."""
    from core import operators as ops

    enrolment = ops.start_enrolment(ctx)
    # The one place a TOTP seed is printed: to the person themselves, handing it to their phone.
    print(f"operator {enrolment.operator}: scan this code with an authenticator app:")
    print(enrolment.qr)
    print()
    print(f"otpauth URI (for an authenticator app that cannot scan): {enrolment.uri}")
    if sys.stdin is None or not sys.stdin.isatty():
        print(f"then confirm with: keyturn operator confirm {enrolment.operator} (the code is asked for)")
        return 0
    ops.confirm_enrolment(ctx, enrolment.operator, ask_code(enrolment.operator))
    print(f"operator {enrolment.operator} confirmed: TOTP enrolment works")
    return 0


def cmd_confirm(ctx: Context, args: argparse.Namespace) -> int:
    """Confirm an enrolment."""
    from core import operators as ops

    if args.code is not None:
        raise InputError(f"CODE: {NEW_CODE_FORM}")
    ops.confirm_enrolment(ctx, args.name, ask_code(args.name))
    print(f"operator {args.name} confirmed: TOTP enrolment works")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    """List operators."""
    from core import operators as ops

    rows = ops.list_operators(ctx)
    if args.json:
        print(json.dumps([
            {"name": o.name, "email": o.email, "confirmed": o.confirmed, "failed_attempts": o.failed_attempts,
             "locked_until": o.locked_until.isoformat() if o.locked_until else None,
             "created_at": o.created_at.isoformat()} for o in rows
        ], indent=2))
        return 0
    if not rows:
        print("no operators yet (anyone may do everything until one confirms enrolment)")
        return 0
    width = max(len(o.name) for o in rows)
    for o in rows:
        state = "confirmed" if o.confirmed else "unconfirmed"
        if o.locked_until:
            state += f", locked until {o.locked_until:%Y-%m-%d %H:%M} UTC"
        print(f"{o.name:<{width}}  {o.email}  {state}")
    return 0


def cmd_scope(ctx: Context, args: argparse.Namespace) -> int:
    """Limit an operator to node subtrees, or lift the limit."""
    from core import operators as ops
    from core.scopes import set_scope

    if bool(args.node) == bool(args.clear):
        raise InputError("give --node PATH (repeatable) or --clear")
    ops.get_operator(ctx, args.name)
    paths = set_scope(ctx, args.name, [] if args.clear else args.node)
    print(f"operator {args.name}: " + (f"limited to {', '.join(paths)}" if paths else "not limited"))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    """Remove an operator."""
    from core import operators as ops

    ops.get_operator(ctx, args.name)  # a clear "no operator" before any code is asked
    ops.require_admin(ctx)  # the code (StepUpRequired, asked by the caller) before the question, not after it
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("removing an operator needs --yes when not run in a terminal")
        if input(f"remove operator {args.name}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not removed")
            return 1
    ops.remove_operator(ctx, args.name)
    print(f"operator {args.name} removed")
    if not ops.is_enforcing(ctx):
        print("no confirmed operator is left: anyone may now do everything until one is enrolled")
    return 0


def cmd_reset_mfa(ctx: Context, args: argparse.Namespace) -> int:
    """Give an operator a new TOTP secret."""
    from core import operators as ops

    info = ops.reset_mfa(ctx, args.name)
    print(f"operator {info.name} has no TOTP secret now; {info.name} enrols a new phone at their own terminal: "
          f"{ops.ENROL_HINT}")
    return 0


# -- reveal ----------------------------------------------------------------------------------------
def _register_reveal(sub: argparse._SubParsersAction) -> None:
    rv = sub.add_parser("reveal", help="show secrets after a TOTP code (every secret shown is audited)",
                        description="Print secrets as `asset<TAB>user<TAB>secret` lines after one TOTP code for the "
                        "whole call. Name accounts as ASSET USER pairs, or use --task or --record.")
    rv.add_argument("pairs", nargs="*", metavar="ASSET USER", help="asset and user name pairs")
    rv.add_argument("--task", metavar="NAME", help="every account the task's latest run worked on")
    rv.add_argument("--record", type=int, metavar="ID", help="a change record's new secret")
    rv.add_argument("--old", action="store_true", help="with --record: the old secret instead of the new one")
    rv.add_argument("--json", action="store_true", help="print a JSON list of objects (also to a pipe or file)")
    rv.add_argument("--reason", metavar="TEXT", default="", help="why (a ticket id or text); asked when missing")
    _otp_option(rv)
    rv.set_defaults(handler=cmd_reveal)


def cmd_reveal(ctx: Context, args: argparse.Namespace) -> int:
    """Reveal secrets."""
    from core import operators as ops
    from core.mfa import MfaSession
    from core.reveal import reveal_pairs, reveal_record, reveal_task

    chosen = sum(bool(x) for x in (args.pairs, args.task, args.record is not None))
    if chosen != 1:
        raise InputError("name what to reveal: ASSET USER pairs, --task NAME, or --record ID (exactly one)")
    if args.pairs and len(args.pairs) % 2:
        raise InputError(f"ASSET USER pairs: got {len(args.pairs)} names, expected an even number "
                         f"({args.pairs[-1]!r} has no user)")
    if args.old and args.record is None:
        raise InputError("--old applies to --record only")
    if not args.json and not sys.stdout.isatty():
        # A secret must not end up in a file or a pipe by accident (a log, a shared scrollback capture).
        raise InputError("stdout is not a terminal: a secret goes to a pipe or a file only with --json")
    ops.require(ctx, "reveal")  # a non-operator is refused before being asked for a code
    _check_targets(ctx, args)  # a typo is reported before a code is spent on it
    reason = args.reason.strip() or ask_reason()
    if not reason:
        raise InputError("--reason: say why (a ticket id or text); it is kept with the audit event")
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, ask_code(ctx.operator))
    if args.record is not None:
        items = reveal_record(ctx, mfa, args.record, "old" if args.old else "new", reason=reason)
    elif args.task:
        items = reveal_task(ctx, mfa, args.task, reason=reason)
    else:
        items = reveal_pairs(ctx, mfa, list(zip(args.pairs[0::2], args.pairs[1::2])), reason=reason)
    _print_secrets(items, args.json)
    return 0


def _check_targets(ctx: Context, args: argparse.Namespace) -> None:
    from core.reveal import check_reveal_targets

    check_reveal_targets(ctx, record=args.record, task=args.task, pairs=list(zip(args.pairs[0::2], args.pairs[1::2])))


def _print_secrets(items: list[RevealedSecret], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"asset": i.asset, "username": i.username, "kind": i.kind, "which": i.which,
                           "object_type": i.object_type, "object_id": i.object_id, "secret": i.secret} for i in items],
                         indent=2))
        return
    for i in items:
        user = i.username if i.kind != "passphrase" else f"{i.username} (passphrase)"
        if "\n" in i.secret.rstrip("\n"):
            # A private key: its PEM lines follow the header line unchanged, so it can be cut out as is.
            print(f"{i.asset}\t{user}\t")
            print(i.secret.rstrip("\n"))
        else:
            print(f"{i.asset}\t{user}\t{i.secret}")


# -- audit -----------------------------------------------------------------------------------------
def _register_audit(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser("audit", help="read and verify the audit trail",
                        description="The audit trail: who did what, when and from where, in a hash chain.")
    au_sub = au.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    lst = au_sub.add_parser("list", help="recent events, newest first", description="List recent audit events.")
    lst.add_argument("--limit", type=int, default=50, metavar="N", help="how many events (default 50)")
    lst.add_argument("--action", metavar="A", help="only this action; 'mfa.*' matches a prefix")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    lst.set_defaults(handler=cmd_audit_list)
    ver = au_sub.add_parser("verify", help="check the hash chain (exit 1 at the first broken link)",
                            description="Recompute every event's hash and link; print the first broken one.")
    ver.add_argument("--head", metavar="ID:HASH", help="an event forwarded earlier (syslog): it must still be there "
                     "unchanged, which shows that no newer events were deleted")
    ver.set_defaults(handler=cmd_audit_verify)


def cmd_audit_list(ctx: Context, args: argparse.Namespace) -> int:
    """List audit events."""
    from core import audit as audit_core

    if args.limit < 1:
        raise InputError(f"--limit: expected a positive number, got {args.limit}")
    events = audit_core.list_events(ctx, limit=args.limit, action=args.action)
    if args.json:
        print(json.dumps([{"id": e.id, "ts": e.ts.isoformat(), "actor": e.actor, "action": e.action,
                           "object_type": e.object_type, "object_id": e.object_id, "detail": e.detail,
                           "source": e.source, "hash": e.hash} for e in events], indent=2))
        return 0
    for e in events:
        detail = json.dumps(e.detail, sort_keys=True) if e.detail else ""
        print(f"{e.id}\t{e.ts:%Y-%m-%d %H:%M:%S}\t{e.actor}\t{e.action}\t{e.object_type}:{e.object_id}\t{e.source}\t{detail}")
    return 0


def cmd_audit_verify(ctx: Context, args: argparse.Namespace) -> int:
    """Verify the chain."""
    from core import audit as audit_core

    expect = None
    if args.head:
        event_id, _, digest = args.head.partition(":")
        if not event_id.isdigit() or len(digest) != 64:
            raise InputError(f"--head: expected ID:HASH as syslog shows it (audit id=ID hash=HASH), got {args.head!r}")
        expect = (int(event_id), digest)
    result = audit_core.verify_chain(ctx, expect_head=expect)
    if result.ok:
        print(f"audit trail ok: {result.checked} events, head hash {result.head_hash or '(empty)'}")
        return 0
    print(f"audit trail BROKEN at event {result.first_bad_id}: {result.reason} "
          f"({result.checked} events before it check out)")
    return 1
