"""Issue 12: the command line's argument errors read like every other keyturn error, `field: problem`, with
the usage line first and exit code 2 kept. They are refused before any vault is opened."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.services import inventory as svc
from tui.cli import argparse_message, main


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The error line main() prints for argv, after checking it exits with 2 and prints the usage first."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("usage: ") and err.endswith("\n")
    return err.splitlines()[-1]


@pytest.mark.parametrize(("argv", "line"), [
    (["asset", "add", "web1", "--address", "10.0.0.1", "--port", "x"],
     "keyturn asset add: error: port: 'x' is not a number 1-65535"),
    (["asset", "add"], "keyturn asset add: error: name: required; address: required"),
    (["asset", "add", "web1", "--address", "10.0.0.1", "--platform", "beos"],
     "keyturn asset add: error: platform: must be one of linux, unix, aix, postgresql, mysql, mariadb, redis, "
     "custom-ssh, windows, oracle, sqlserver, mongodb (got 'beos')"),
    (["asset", "add", "web1", "--address", ""], "keyturn asset add: error: address: is empty"),
    (["asset", "add", "web1", "--address", "10.0.0.1", "--port"], "keyturn asset add: error: port: needs a value"),
    (["records", "list", "--execution", "x"], "keyturn records list: error: execution: must be a whole number (got 'x')"),
    (["records", "list", "--limit", "0"], "keyturn records list: error: limit: must be at least 1 (got 0)"),
    (["worker", "--concurrency", "0"], "keyturn worker: error: concurrency: must be between 1 and 256 (got '0')"),
    (["account", "add", "web1", "app"], "keyturn account add: error: password stdin or key file: one is required "
                                        "(--password-stdin or --key-file)"),
    (["account", "add", "web1", "app", "--password-stdin", "--key-file", "k"],
     "keyturn account add: error: key file: not allowed with --password-stdin"),
    (["account", "add", "web1", "a b", "--password-stdin"],
     "keyturn account add: error: username: 'a b' is not a valid user name (letters, digits, '_', '.', '-'; "
     "it starts with a letter or '_' and has at most 32 characters)"),
    (["nosuch"], "keyturn: error: command: must be one of import, asset, account, node, task, records, retry, "
                 "reconcile, operator, reveal, audit, scheduler, mail, key, heartbeat, db, worker, init (got 'nosuch')"),
])
def test_argument_errors_name_the_field_then_the_problem(capsys, argv: list[str], line: str) -> None:
    assert _refused(capsys, *argv) == line


def test_the_cli_and_core_say_the_same_words_for_the_same_bad_port(capsys) -> None:
    with pytest.raises(InputError) as core_says:
        svc.parse_port("x")
    assert _refused(capsys, "asset", "edit", "web1", "--port", "x").endswith(f"error: {core_says.value}")


@pytest.mark.parametrize(("message", "form"), [
    ("argument -p/--port: invalid int value: 'x'", "port: must be a whole number (got 'x')"),
    ("argument --ratio: invalid float value: 'y'", "ratio: must be a number (got 'y')"),
    ("argument --key-file: expected one argument", "key file: needs a value"),
    ("argument --yes: ignored explicit argument 'no'", "yes: takes no value (got 'no')"),
    ("argument --node: nodes: node path '/' is empty", "nodes: node path '/' is empty"),
    ("ambiguous option: --p could match --port, --platform", "p: could be --port or --platform; type more of it"),
    ("unrecognized arguments: --bogus", "unrecognized arguments: --bogus"),
])
def test_each_kind_of_argparse_message_maps_to_field_and_problem(message: str, form: str) -> None:
    assert argparse_message(message) == form
