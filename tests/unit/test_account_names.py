"""Account names: one rule for `account add`, every import format, tasks and the drivers; secrets read from stdin.

A name like `a;id` or `u1:x` can never be used (it would break chpasswd's `user:password` line or a remote
command), so it is refused where it is typed, with the field named, instead of failing at the first run.
"""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest

from core.context import Context
from core.drivers.base import DriverError, check_username
from core.errors import InputError
from core.importer import parse_inventory
from core.names import is_username
from core.tasks import validate_task
from storage import tasks as task_repo
from storage.inventory import account_secrets, get_account_row
from storage.types import TaskSpec
from tests.unit.test_cli_inventory import cli  # noqa: F401 - the in-process `keyturn` fixture

BAD = ["a;id", "u1:x", "a b", "-rf", "$(id)", "a|b", "a`id`", "a&b", "a>b", "a'b", 'a"b', "a\\b", "1user",
       "a" * 33, "é", "a/b", "a*"]
GOOD = ["root", "svc_app", "deploy-1", "a.b", "MACHINE$", "_x", "a" * 32, "Admin"]


def verdicts(name: str, tmp_path: Path) -> dict[str, bool]:
    """Whether each way a user name comes in accepts name."""
    from tui.cli import build_parser

    got = {"rule": is_username(name)}
    try:
        build_parser().parse_args(["account", "add", "--password-stdin", "web1", "--", name])
        got["account add"] = True
    except SystemExit:
        got["account add"] = False
    csv_file = tmp_path / "inv.csv"
    with csv_file.open("w", newline="") as f:
        csv.writer(f).writerows([["asset", "address", "username", "secret"], ["web1", "10.0.0.5", name, "Pw-1-x"]])
    ini = tmp_path / "hosts"
    ini.write_text(f"web1 ansible_host=10.0.0.5 ansible_user={shlex.quote(name)} ansible_password=Pw-1-x\n")
    for label, path in (("csv import", csv_file), ("ini import", ini)):
        try:
            got[label] = parse_inventory(path).assets[0].accounts[0].username == name
        except InputError:
            got[label] = False
    try:
        validate_task(TaskSpec(name="t", usernames=[name], assets=["web1"]))
        got["task"] = True
    except InputError:
        got["task"] = False
    try:
        check_username(name)
        got["driver"] = True
    except DriverError:
        got["driver"] = False
    return got


@pytest.mark.parametrize("name", BAD + GOOD)
def test_every_way_in_applies_the_same_rule(name: str, tmp_path: Path) -> None:
    got = verdicts(name, tmp_path)
    assert set(got.values()) == {name in GOOD}, got


def test_a_trailing_line_break_is_not_part_of_a_valid_name() -> None:
    # The drivers' old pattern ended in `$`, which also matches before a final newline.
    assert not is_username("root\n") and not is_username("root\r")
    with pytest.raises(DriverError):
        check_username("root\n")


@pytest.mark.parametrize("name", ["a;id", "u1:x", "a b", "-rf", "$(id)", "1user", "a" * 33])
def test_account_add_refuses_an_unusable_name_naming_the_field(cli, ctx: Context, name: str) -> None:  # noqa: F811
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    proc = cli("account", "add", "--password-stdin", "web1", "--", name, input="Pw-never-stored-1\n")
    assert proc.returncode == 2, proc
    assert f"keyturn account add: error: username: {name!r} is not a valid user name" in proc.stderr
    assert "Pw-never-stored-1" not in proc.stderr + proc.stdout
    assert json.loads(cli("account", "list", "--json", check=True).stdout) == []


def test_import_names_the_line_and_variable_of_an_unusable_name(tmp_path: Path) -> None:
    csv = tmp_path / "inv.csv"
    csv.write_text("asset,address,username,secret\nweb1,10.0.0.5,root,Pw-1-x\nweb1,,u1:x,Pw-2-x\n")
    with pytest.raises(InputError, match=r"inv\.csv:3: username: 'u1:x' is not a valid user name"):
        parse_inventory(csv)
    ini = tmp_path / "hosts"
    ini.write_text("[web]\nweb1 ansible_user=root\nweb2 ansible_user='a;id' ansible_password=Pw-1-x\n")
    with pytest.raises(InputError, match=r"hosts:3: .*ansible_user: 'a;id' is not a valid user name"):
        parse_inventory(ini)
    yml = tmp_path / "fleet.yaml"
    yml.write_text("assets:\n  - name: web1\n    address: 10.0.0.5\n    accounts:\n      - username: ok\n"
                   "      - username: 'a b'\n")
    with pytest.raises(InputError, match=r"fleet\.yaml:6: username: 'a b' is not a valid user name"):
        parse_inventory(yml)


def _stored(ctx: Context, username: str) -> str | None:
    with ctx.db.read() as s:
        acc_id = get_account_row(s, "web1", username).id
    return account_secrets(ctx.db, acc_id).secret


@pytest.mark.parametrize(("given", "stored"), [
    ("Pw-unix-1\n", "Pw-unix-1"),
    ("Pw-windows-1\r\n", "Pw-windows-1"),  # a file saved on Windows: the CR belongs to the line end
    ("Pw-no-newline-1", "Pw-no-newline-1"),
    ("Pw-space-1 \n", "Pw-space-1 "),  # only the line end goes; a trailing space is part of the password
    ("Pw-tab-1\t\r\n", "Pw-tab-1\t"),
    ("Pw-first-line-1\nsecond line\n", "Pw-first-line-1"),
])
def test_password_stdin_drops_exactly_one_line_end(cli, ctx: Context, given: str, stored: str) -> None:  # noqa: F811
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    cli("account", "add", "web1", "app", "--password-stdin", input=given, check=True)
    assert _stored(ctx, "app") == stored


@pytest.mark.parametrize("given", ["Pw-cr-1\r", "Pw-cr-1\r\r\n", "Pw\rcr-1\n"])
def test_password_stdin_refuses_a_carriage_return_that_is_not_a_line_end(cli, given: str) -> None:  # noqa: F811
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    proc = cli("account", "add", "web1", "app", "--password-stdin", input=given)
    assert proc.returncode == 2 and "the password read from stdin contains a carriage return" in proc.stderr
    assert "Pw" not in proc.stderr
    assert json.loads(cli("account", "list", "--json", check=True).stdout) == []


def test_become_password_stdin_follows_the_same_rule(cli, ctx: Context) -> None:  # noqa: F811
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    cli("account", "add", "web1", "root", "--password-stdin", "--become-password-stdin",
        input="Pw-root-1\r\nSudo-pw-1\r\n", check=True)
    with ctx.db.read() as s:
        acc_id = get_account_row(s, "web1", "root").id
    got = account_secrets(ctx.db, acc_id)
    assert (got.secret, got.become) == ("Pw-root-1", "Sudo-pw-1")


def test_task_password_stdin_drops_exactly_one_line_end(cli, ctx: Context) -> None:  # noqa: F811
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    cli("task", "create", "t1", "--accounts", "app", "--asset", "web1", "--password-stdin",
        input="Task-pw-1 \r\n", check=True)
    assert task_repo.get_task(ctx.db, "t1").specific_secret == "Task-pw-1 "
    proc = cli("task", "create", "t2", "--accounts", "app", "--asset", "web1", "--password-stdin", input="Task-pw-2\r")
    assert proc.returncode == 2 and "line break" in proc.stderr


@pytest.mark.parametrize("name", ["a;id", "a b", "-rf", "1user"])
def test_the_core_use_case_applies_the_rule_too(ctx: Context, name: str) -> None:
    """The app's account form and any other front end reach core.services.inventory.add_account: it refuses the
    name itself (field username), so no front end can store a name the CLI and import refuse."""
    from core.services import inventory

    inventory.add_asset(ctx, "web1", address="10.9.0.1")
    with pytest.raises(InputError) as refused:
        inventory.add_account(ctx, "web1", name, secret_type="password", secret="Pw-never-stored-1")
    assert refused.value.field == "username" and "is not a valid user name" in str(refused.value)
    assert inventory.list_accounts(ctx) == []
