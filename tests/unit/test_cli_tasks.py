"""`keyturn task ...` as a user runs it: a real subprocess on a real database, secrets never printed or stored plain."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from core.context import Context
from storage.inventory import upsert_account, upsert_asset
from storage.tasks import get_task
from tui.cli import main

# The command line on SQLite and on PostgreSQL: the same commands, the same output.
pytestmark = pytest.mark.both_backends

PASSWORD = "Cli \"quoted\" 'pw' $HOME {{ x }} \\ end"


@pytest.fixture
def inventory(ctx: Context) -> Context:
    """web1 (root privileged, alice) in /prod/web and db1 (no privileged account) in /prod/db."""
    with ctx.db.write() as s:
        web1, _ = upsert_asset(s, "web1", address="127.0.0.2", nodes=["/prod/web"])
        upsert_account(ctx.db, s, web1, "root", secret="r00t", privileged=True)
        upsert_account(ctx.db, s, web1, "alice", secret="x")
        db1, _ = upsert_asset(s, "db1", address="127.0.0.3", nodes=["/prod/db"])
        upsert_account(ctx.db, s, db1, "alice", secret="x")
    return ctx


@pytest.fixture
def cli_inproc(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """The same main() the console script runs, in this process (no interpreter start-up per call)."""
    for key, value in keyturn_env.items():
        monkeypatch.setenv(key, value)

    def run(*args: str, input: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help and usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _db_bytes(ctx: Context) -> bytes:
    return b"".join(p.read_bytes() for p in ctx.settings.home.glob("keyturn.db*") if p.is_file())


def test_create_show_list_never_reveal_the_specific_password(inventory: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    out = keyturn_cli("task", "create", "web", "--accounts", "alice,root", "--node", "/prod", "--password-stdin",
                      "--interval", "24", "--description", "nightly", input=PASSWORD + "\n", check=True)
    assert out.stdout.splitlines()[0].startswith("task web created; next run ")
    assert "targets: 1 account on 1 asset; 3 excluded" in out.stdout

    show = keyturn_cli("task", "show", "web", input="", check=True).stdout
    assert "specific password: set" in show and "every 24 hours" in show
    next_runs = [line for line in show.splitlines() if line.startswith("next runs:")][0]
    assert next_runs.count("UTC") == 3
    data = json.loads(keyturn_cli("task", "show", "web", "--json", input="", check=True).stdout)
    assert data["specific_secret_set"] is True and data["strategy"] == "specific" and len(data["next_runs"]) == 3
    listed = keyturn_cli("task", "list", "--json", input="", check=True).stdout
    assert [t["name"] for t in json.loads(listed)] == ["web"]
    table = keyturn_cli("task", "list", input="", check=True).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "TYPE", "STRATEGY"] and "web" in table
    for text in (out.stdout, out.stderr, show, json.dumps(data), listed, table):
        assert PASSWORD not in text and "$HOME {{ x }}" not in text
    assert get_task(inventory.db, "web").specific_secret == PASSWORD  # stored exactly, quotes and all
    raw = _db_bytes(inventory)
    assert PASSWORD.encode() not in raw and b"$HOME {{ x }}" not in raw


def test_edit_copy_activate_and_delete(inventory: Context, keyturn_cli, cli_inproc) -> None:  # type: ignore[no-untyped-def]
    keyturn_cli("task", "create", "t1", "--accounts", "alice", "--asset", "web1", "--cron", "0 3 * * *", input="",
                check=True)
    edited = keyturn_cli("task", "edit", "t1", "--length", "40", "--no-symbols", "--exclude", "lO01", "--asset",
                         "web1,db1", input="", check=True)
    # db1 has no privileged account to log in with, so only web1's alice is a target.
    assert edited.stdout.splitlines()[1] == "targets: 1 account on 1 asset; 1 excluded (1 no privileged account on the asset)"
    show = cli_inproc("task", "show", "t1")[1]
    assert "password rules: length 40, lower, upper, digits, excluding 'lO01'" in show
    assert "assets: db1, web1" in show and "schedule: cron 0 3 * * *" in show

    code, _, err = cli_inproc("task", "edit", "t1")
    assert code == 2 and "keyturn: error: edit: nothing to change" in err

    copied = keyturn_cli("task", "copy", "t1", "t2", input="", check=True)
    assert copied.stdout.startswith("task t2 copied from t1; next run ")
    off = keyturn_cli("task", "deactivate", "t2", input="", check=True)
    assert off.stdout.strip() == "task t2 inactive; it will not run on schedule"
    data = {t["name"]: t for t in json.loads(cli_inproc("task", "list", "--json")[1])}
    assert data["t2"]["active"] is False and data["t2"]["next_run_at"] is None
    assert data["t2"]["rules"]["length"] == 40 and data["t1"]["active"] is True
    code, out, _ = cli_inproc("task", "activate", "t2")
    assert code == 0 and out.startswith("task t2 active; next run ")

    refused = keyturn_cli("task", "delete", "t2", input="")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "keyturn: error: delete: not deleting task 't2' without --yes (no terminal to confirm on)"
    assert keyturn_cli("task", "delete", "t2", "--yes", input="", check=True).stdout.strip() == "task t2 deleted"
    code, _, err = cli_inproc("task", "show", "t2")
    assert code == 1 and err.strip() == "keyturn: error: no task named 't2'"


def test_preview_lists_targets_and_reasons(inventory: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    keyturn_cli("task", "create", "p", "--accounts", "root,alice", "--node", "/prod", input="", check=True)
    text = keyturn_cli("task", "preview", "p", input="", check=True).stdout
    assert text.splitlines()[0] == ("1 account on 1 asset; 3 excluded (1 no such account on this asset, "
                                    "1 no privileged account on the asset, 1 secure mode: the account keyturn logs in with)")
    assert "  web1  127.0.0.2:22  alice" in text
    assert "  web1  root: secure mode: the account keyturn logs in with" in text
    data = json.loads(keyturn_cli("task", "preview", "p", "--json", input="", check=True).stdout)
    assert [(t["asset_name"], t["username"]) for t in data["targets"]] == [("web1", "alice")]
    assert {(e["asset_name"], e["username"], e["reason"]) for e in data["excluded"]} == {
        ("db1", "root", "no such account on this asset"), ("db1", "alice", "no privileged account on the asset"),
        ("web1", "root", "secure mode: the account keyturn logs in with"),
    }
    relaxed = keyturn_cli("task", "preview", "p", input="", env={"KEYTURN_SECURE_MODE": "false"}, check=True)
    assert relaxed.stdout.splitlines()[0].startswith("2 accounts on 1 asset; 2 excluded")
    assert "  web1  127.0.0.2:22  root  (privileged)" in relaxed.stdout


def test_key_file_and_secrets_read_from_stdin_in_order(inventory: Context, keyturn_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"hunter two")).decode()
    key_path = tmp_path / "id_deploy"
    key_path.write_text(key)
    wrong = keyturn_cli("task", "create", "k", "--accounts", "alice", "--asset", "web1", "--key-file", str(key_path),
                        "--key-passphrase-stdin", input="nope\n")
    assert wrong.returncode == 2 and wrong.stderr.strip() == "keyturn: error: private key: wrong passphrase"
    keyturn_cli("task", "create", "k", "--accounts", "alice", "--asset", "web1", "--key-file", str(key_path),
                "--key-passphrase-stdin", "--become-password-stdin", "--key-strategy", "replace-all",
                input="hunter two\nsudo secret\n", check=True)
    spec = get_task(inventory.db, "k")
    assert (spec.secret_type, spec.secret_strategy, spec.ssh_key_strategy) == ("ssh_key", "specific", "replace-all")
    assert spec.specific_passphrase == "hunter two" and spec.become_password == "sudo secret"
    show = keyturn_cli("task", "show", "k", input="", check=True).stdout
    assert "specific private key: set" in show and "key passphrase: set" in show and "sudo password: set" in show
    assert "hunter two" not in show and "sudo secret" not in show and "PRIVATE KEY" not in show


def test_create_from_a_toml_file(inventory: Context, keyturn_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "task.toml"
    path.write_text('name = "from-file"\naccounts = ["alice"]\nnodes = ["/prod/web"]\ninterval = 12\n'
                    '[rules]\nlength = 16\nsymbols = false\n')
    keyturn_cli("task", "create", "--from", str(path), "--description", "override", input="", check=True)
    data = json.loads(keyturn_cli("task", "show", "from-file", "--json", input="", check=True).stdout)
    assert (data["interval_hours"], data["rules"]["length"], data["rules"]["symbols"]) == (12, 16, False)
    assert data["description"] == "override" and data["nodes"] == ["/prod/web"]
    path.write_text('name = "bad"\naccounts = ["alice"]\nnodes = ["/prod"]\n[rules]\nlength = "long"\n')
    bad = keyturn_cli("task", "create", "--from", str(path), input="")
    assert bad.returncode == 2 and bad.stderr.strip() == f"keyturn: error: {path}: rules.length: must be int, got 'long'"


@pytest.mark.parametrize(("args", "message"), [
    (["task", "create", "x", "--accounts", "alice", "--asset", "nope"], "assets: no asset named 'nope'"),
    (["task", "create", "x", "--accounts", "alice"], "targets: choose at least one asset or node"),
    (["task", "create", "x", "--accounts", "alice", "--asset", "web1", "--length", "200"], "length: must be 8 to 128, got 200"),
    (["task", "create", "x", "--accounts", "alice", "--asset", "web1", "--no-lower", "--no-upper", "--no-digits",
      "--no-symbols"], "rules: enable at least one character class (lower, upper, digits, symbols)"),
    (["task", "create", "x", "--accounts", "alice", "--asset", "web1", "--cron", "* * *"],
     "cron: '* * *' has 3 fields; expected 5 (minute hour day month weekday)"),
    (["task", "create", "x", "--accounts", "alice", "--asset", "web1", "--password-stdin"],
     "--password-stdin: expected a line on standard input, got end of input"),
    (["task", "create", "x", "--accounts", "alice", "--asset", "web1", "--interval", "2", "--start", "soon"],
     "start: 'soon' is not an ISO time such as 2025-01-31T02:00:00Z"),
])
def test_bad_input_is_one_clear_line_and_nothing_is_saved(inventory: Context, cli_inproc, args: list[str],  # type: ignore[no-untyped-def]
                                                          message: str) -> None:
    code, out, err = cli_inproc(*args)
    assert code == 2, err
    assert err.strip() == f"keyturn: error: {message}"
    assert "Traceback" not in err
    assert json.loads(cli_inproc("task", "list", "--json")[1]) == []


def test_every_task_command_has_help(cli_inproc) -> None:  # type: ignore[no-untyped-def]
    for sub in ("create", "edit", "show", "list", "preview", "delete", "copy", "activate", "deactivate", "run"):
        code, out, _ = cli_inproc("task", sub, "--help")
        assert code == 0 and out.startswith(f"usage: keyturn task {sub}")
        assert len(out.split("\n\n")) >= 3  # usage, a description, the options
    run_help = cli_inproc("task", "run", "--help")[1]
    assert "--json" in run_help and "--no-reconcile" in run_help
    create_help = " ".join(cli_inproc("task", "create", "--help")[1].split())
    assert "standard input is read one line per secret in this order: the password (--password-stdin)" in create_help


def test_preview_marks_a_target_without_a_pinned_host_key(inventory: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: an asset with no pinned host key fails at run time; the preview says so, not "will change"."""
    keyturn_cli("task", "create", "p", "--accounts", "root,alice", "--node", "/prod", input="", check=True)
    lines = keyturn_cli("task", "preview", "p", input="", check=True).stdout.splitlines()
    changed = lines[lines.index("will change:") + 1]
    assert "NO PINNED HOST KEY: fails until `keyturn asset trust" in changed
