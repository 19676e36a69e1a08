"""The `keyturn` command line: one module per command group, all reaching the same core API as the TUI."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence

from core.config import load_settings
from core.context import Context, open_context
from core.errors import KeyturnError
from storage.inventory import NotFound

Handler = Callable[[Context, argparse.Namespace], int]

# Each module has register(subparsers); order is the order of `keyturn --help`.
GROUPS = ("tui.cli.inventory", "tui.cli.tasks", "tui.cli.records", "tui.cli.operators", "tui.cli.scheduler", "tui.cli.vaultkeys",
          "tui.cli.database")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


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
    """Who is acting: --operator, KEYTURN_OPERATOR, SUDO_USER, else the OS login."""
    if explicit:
        return explicit
    for var in ("KEYTURN_OPERATOR", "SUDO_USER"):
        if env.get(var):
            return env[var]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid())


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


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command group registered."""
    import importlib

    parser = _Parser(prog="keyturn", description="Rotate account secrets on many hosts; with no command, open the app.")
    parser.add_argument("--operator", help="act as this operator (default: KEYTURN_OPERATOR, SUDO_USER, or your login)")
    parser.add_argument("--config", help="configuration file (default: $XDG_CONFIG_HOME/keyturn/config.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name in GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `keyturn` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_path=None if not args.config else __import__("pathlib").Path(args.config))
        if args.command is None:
            from tui.app import run_app

            return run_app(settings, operator=resolve_operator(args.operator, os.environ), source=terminal_source(os.environ))
        standalone = getattr(args, "standalone", None)
        if standalone is not None:  # needs the settings only, not the vault (keyturn db ...)
            return standalone(settings, args)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.parse_args([*(argv or sys.argv[1:]), "--help"])
            return 2
        ctx = open_context(settings, operator=resolve_operator(args.operator, os.environ), source=terminal_source(os.environ))
        try:
            permission = getattr(args, "permission", None)
            if permission:
                from core.operators import require

                require(ctx, permission)
            return handler(ctx, args)
        finally:
            ctx.close()
    except KeyturnError as exc:
        print(f"keyturn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except NotFound as exc:
        print(f"keyturn: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keyturn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
