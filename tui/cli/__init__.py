"""The `keyturn` command line: one module per command group, all reaching the same core API as the TUI."""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from core import textsafe

# Only light modules at the top: `keyturn --help` must not load SQLAlchemy, paramiko or Textual. Each command's
# handler imports what it needs (tests/unit/test_cli_imports.py; figures in benchmarks/README.md).
from core.config import ProcessIdentity, Settings, load_settings
from core.errors import ConfigError, KeyturnError

if TYPE_CHECKING:
    from core.context import Context

Handler = Callable[["Context", argparse.Namespace], int]
# A read-only command's handler that needs no Context (settings, acting person, arguments): its exit code, or
# None when it cannot answer exactly as the handler would (then main() opens the vault and runs the handler).
QuickHandler = Callable[[Settings, str, argparse.Namespace], "int | None"]

# Each module has register(subparsers); order is the order of `keyturn --help`.
GROUPS = ("tui.cli.inventory", "tui.cli.tasks", "tui.cli.records", "tui.cli.operators", "tui.cli.scheduler", "tui.cli.vaultkeys",
          "tui.cli.drift", "tui.cli.database", "tui.cli.workers")


def field_name(argument: str) -> str:
    """The field an argparse argument is about, in core's words: '-p/--port' -> 'port', 'EXECUTION_ID' ->
    'execution id', '--key-file' -> 'key file'."""
    return argument.split("/")[-1].lstrip("-").replace("-", " ").replace("_", " ").lower()


_TYPE_WORDS = {"int": "must be a whole number", "float": "must be a number"}
_HAS_FIELD = re.compile(r"[\w .]+: ")


def _problem(field: str, problem: str) -> str:
    """'field: problem' for one argument's problem as argparse (or our type function) words it."""
    if m := re.fullmatch(r"invalid (\w+) value: (.*)", problem):
        return f"{field}: {_TYPE_WORDS.get(m[1], 'is not valid')} (got {m[2]})"
    if m := re.fullmatch(r"invalid choice: (.*?) \(choose from (.*)\)", problem):
        return f"{field}: must be one of {m[2].replace(chr(39), '')} (got {m[1]})"
    if m := re.fullmatch(r"expected (?:one|at least one|\d+) arguments?", problem):
        return f"{field}: needs a value"
    if m := re.fullmatch(r"not allowed with argument (.*)", problem):
        return f"{field}: not allowed with {m[1]}"
    if m := re.fullmatch(r"ignored explicit argument (.*)", problem):
        return f"{field}: takes no value (got {m[1]})"
    if _HAS_FIELD.match(problem):  # a type function that names its field already (core's check_name, ...)
        return problem
    if problem.startswith(f"{field} "):  # "port 'x' is not a number": the field, then what is wrong with it
        return f"{field}: {problem[len(field) + 1:]}"
    return f"{field}: {problem}"


def argparse_message(message: str) -> str:
    """argparse's error message in the form every keyturn error has, 'field: problem' (issue 12):
    "argument --port: invalid int value: 'x'" -> "port: must be a whole number (got 'x')"."""
    if m := re.fullmatch(r"argument (\S+): (.*)", message, re.DOTALL):
        return _problem(field_name(m[1]), m[2])
    if m := re.fullmatch(r"the following arguments are required: (.*)", message):
        return "; ".join(f"{field_name(a)}: required" for a in m[1].split(", "))
    if m := re.fullmatch(r"one of the arguments (.*) is required", message):
        options = m[1].split()
        return f"{' or '.join(field_name(o) for o in options)}: one is required ({' or '.join(options)})"
    if m := re.fullmatch(r"ambiguous option: (\S+) could match (.*)", message):
        return f"{field_name(m[1])}: could be {m[2].replace(', ', ' or ')}; type more of it"
    return message  # "unrecognized arguments: --x" already says what and which


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {argparse_message(message)}\n")


class _CommandParser(_Parser):
    """A command's parser: also takes --operator after the command (`keyturn reveal --operator alice ...`).

    Nested groups inherit this class (argparse uses the parent's type), so every subcommand gets the option;
    SUPPRESS keeps the global --operator when it is not repeated after the command.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.add_argument("--operator", default=argparse.SUPPRESS, metavar="NAME",
                          help="act as this operator (same as the global --operator)")


def resolve_operator(explicit: str | None, env: dict[str, str] | os._Environ) -> str:
    """Who is acting: under sudo the user sudo names (a typed name refused); else --operator, KEYTURN_OPERATOR
    or the OS login."""
    from core.identity import acting_person

    return acting_person(explicit, env)


class _CleanStream(io.TextIOBase):
    """A text stream that drops escape sequences and control characters (core.textsafe) on the way out."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:  # type: ignore[override]
        self.raw.write(textsafe.clean(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8")


def terminal_source(env: dict[str, str] | os._Environ) -> str:
    """Where the person acts from: the SSH client address and the terminal, for the audit trail."""
    parts = []
    if env.get("SSH_CLIENT"):
        parts.append("ssh " + env["SSH_CLIENT"].split()[0])
    try:
        parts.append(os.ttyname(0))
    except OSError:
        parts.append("no-tty")
    return " ".join(parts)


def _secrets_on_stdin(args: argparse.Namespace) -> bool:
    return any(getattr(args, f, False) for f in ("password_stdin", "key_passphrase_stdin", "become_password_stdin"))


# Whether a TOTP step-up is needed is decided by the core use case (core.stepup): it raises StepUpRequired
# before it writes anything, and _with_step_up asks for a code and runs the command again. Without a terminal
# the code is line one of stdin, so a command that reads other lines of stdin *before* its use case can raise
# would hand the code's line to the secret (and the secret's to the code). Only those ask up front, and only
# once operators are enforced: a task created or edited with --*-stdin secrets (core steps up for every task
# create/edit), the SMTP password, and an inventory read from stdin. `account add` and `account edit`
# ask core first (check_account_step_up: only a privileged account needs a code) before they read a secret, so
# they need no entry.
STEP_UP_BEFORE_STDIN: dict[tuple[str, str], Callable[[argparse.Namespace], bool]] = {
    ("task", "create"): _secrets_on_stdin,
    ("task", "edit"): _secrets_on_stdin,
    ("mail", "set-password"): lambda args: not args.clear,
    ("import", ""): lambda args: args.file in ("-", "/dev/stdin") or args.known_hosts in ("-", "/dev/stdin"),
}


def _with_step_up(ctx: Context, handler: Handler, args: argparse.Namespace) -> int:
    """Run handler; when core asks for a TOTP step-up, ask the acting person for a code once and run it again.

    Every step-up point comes before the change it guards, so the first attempt changed nothing.
    """
    from core.mfa import MfaSession
    from core.stepup import StepUpRequired
    from tui.cli.operators import ask_code

    if ctx.mfa is None:
        ctx.mfa = MfaSession(ctx.settings)
    sub = getattr(args, f"{args.command}_command", None) or ""
    reads_stdin = STEP_UP_BEFORE_STDIN.get((args.command, sub))
    if reads_stdin is not None and reads_stdin(args):
        from core.operators import is_enforcing, require

        require(ctx, "edit")
        if is_enforcing(ctx):
            ctx.mfa.unlock(ctx, ask_code(ctx.operator))
    try:
        return handler(ctx, args)
    except StepUpRequired as exc:
        print(f"keyturn: {exc}", file=sys.stderr)
        ctx.mfa.unlock(ctx, ask_code(ctx.operator))
        return handler(ctx, args)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command group registered."""
    import importlib

    parser = _Parser(prog="keyturn", description="Rotate account secrets on many hosts; with no command, open the app.")
    parser.add_argument("--operator", help="act as this operator (default: KEYTURN_OPERATOR, SUDO_USER, or your login)")
    parser.add_argument("--config", help="configuration file (default: $XDG_CONFIG_HOME/keyturn/config.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name in GROUPS:
        importlib.import_module(name).register(sub)
    sub.add_parser("init", help="create a new empty vault (only where no database is in use)",
                   description="Create the database and, if missing, the master key. Needed when a master key "
                               "exists but its database is gone; never replaces an existing database.")
    return parser


def main(argv: Sequence[str] | None = None, *, quick: bool = True) -> int:
    """Entry point of the `keyturn` console script.

    quick=False: never a command's quick handler, always the full path (tests compare the two)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None:
        # Every line the command prints passes the same filter: rows stored before text was cleaned at the
        # door, and anything else from outside, reach the terminal without escape sequences.
        sys.stdout, sys.stderr = _CleanStream(sys.stdout), _CleanStream(sys.stderr)  # type: ignore[assignment]
    try:
        if args.config and ProcessIdentity.current(os.environ).elevated:
            # Refused before the path is looked at: through sudo, --config must not tell which files exist.
            load_settings(config_path=Path(args.config))
        if args.config and not Path(args.config).expanduser().is_file():
            # A mistyped path must not silently fall back to the defaults.
            raise ConfigError(f"--config: no such file {args.config}")
        settings = load_settings(config_path=None if not args.config else Path(args.config).expanduser())
        if args.command is None:
            from tui.app import run_app

            return run_app(settings, operator=resolve_operator(args.operator, os.environ), source=terminal_source(os.environ))
        if args.command == "init":
            from core.context import init_vault

            print(f"keyturn: a new empty vault is ready in {init_vault(settings)}")
            return 0
        standalone = getattr(args, "standalone", None)
        if standalone is not None:  # needs the settings only, not the vault (keyturn db ...)
            return standalone(settings, args)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.parse_args([*(argv or sys.argv[1:]), "--help"])
            return 2
        operator = resolve_operator(args.operator, os.environ)
        permission = getattr(args, "permission", None)
        quick_handler: QuickHandler | None = getattr(args, "quick_handler", None) if quick else None
        # Only commands that need no permission (require lets anyone browse) skip the Context: the checks that
        # matter for a read are the quick handler's own (core/quicklist.py).
        if quick_handler is not None and permission in (None, "browse"):
            code = quick_handler(settings, operator, args)
            if code is not None:
                return code
        from core.context import open_context

        ctx = open_context(settings, operator=operator, source=terminal_source(os.environ))
        try:
            if permission:
                from core.operators import require

                require(ctx, permission)
            return _with_step_up(ctx, handler, args)
        finally:
            ctx.close()
    except KeyturnError as exc:
        print(f"keyturn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("keyturn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    finally:
        if isinstance(sys.stdout, _CleanStream):
            sys.stdout.flush()
            sys.stdout, sys.stderr = sys.stdout.raw, sys.stderr.raw  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())
