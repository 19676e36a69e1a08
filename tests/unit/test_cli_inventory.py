"""The inventory commands as a user runs them: `keyturn import/asset/account/node`.

Most tests call the CLI's main() in this process (argv, stdin, stdout and exit code as a user sees them)
because each `python -m tui` subprocess costs a second or more of imports; the ones where the process
boundary matters (a secret piped on stdin, the error text and exit code, --help) run the real subprocess.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tui.cli import build_parser, main

DATA = Path(__file__).resolve().parent.parent / "data" / "inventory"
ENV = {"KT_TEST_APP_PW": "Kt-env-app-4242", "KT_TEST_BECOME": "Kt-env-become-77"}
# Every secret the four example files hold (inline, env:, file:, key files).
IMPORTED_SECRETS = [
    "Kt-csv-root-5521", "Kt-env-app-4242", "Kt-csv-admin-6632", "Kt-csv-sudo-6633", "Kt-file-secret-7781",
    "Kt-yaml-root-1187", "Kt-env-become-77", "Kt-key-phrase-4419", "Kt-ini-web-3341", "Kt-ini-become-9902",
    "Kt-ay-become-5150", "Kt-ay-pg1-2718", "Kt-ay-www1-3141",
]


@dataclass
class Result:
    """What a user sees from one command."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `keyturn ARGS` through main() in this process with the test's private data directory."""
    for name in [k for k in os.environ if k.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    for name in ("KEYTURN_HOME", "KEYTURN_CONFIG", "KEYTURN_OPERATOR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, keyturn_env[name])

    def run(*args: str, input: str = "", env: dict[str, str] | None = None, check: bool = False) -> Result:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"keyturn {' '.join(args)} exited {code}\nstdout:\n{out}\nstderr:\n{err}")
        return Result(code, out, err)

    return run


def key_body_lines(name: str) -> list[str]:
    """The base64 lines of a private key file: none may appear in the database."""
    return [ln for ln in (DATA / "keys" / name).read_text().splitlines() if ln and not ln.startswith("-----")]


def db_file(keyturn_env: dict[str, str]) -> Path:
    return Path(keyturn_env["KEYTURN_HOME"]) / "keyturn.db"


def sqlite_dump(keyturn_env: dict[str, str]) -> str:
    """`sqlite3 keyturn.db .dump`, exactly as an admin would look into the file."""
    return subprocess.run(["sqlite3", str(db_file(keyturn_env)), ".dump"], capture_output=True, text=True,
                          check=True).stdout


def test_imported_secrets_are_not_in_the_database_in_plaintext(cli, keyturn_env) -> None:
    for name in ("fleet.csv", "fleet.yaml", "hosts.ini", "hosts.yml"):
        out = cli("import", str(DATA / name), env=ENV, check=True).stdout
        assert "created" in out
    dumped = sqlite_dump(keyturn_env)
    assert "web01.example.com" in dumped  # the dump did read the imported data
    for secret in IMPORTED_SECRETS + key_body_lines("deploy_ed25519") + key_body_lines("admin_ed25519_enc"):
        assert secret not in dumped
    home = Path(keyturn_env["KEYTURN_HOME"])
    raw = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("keyturn.db"))
    for secret in IMPORTED_SECRETS:
        assert secret.encode() not in raw
    # and nothing copied the import files into the data directory
    assert not [p for p in home.rglob("*") if p.suffix in (".csv", ".yaml", ".yml", ".ini")]


def test_reimport_says_unchanged(cli) -> None:
    cli("import", str(DATA / "hosts.ini"), check=True)
    again = cli("import", str(DATA / "hosts.ini"), check=True)
    assert "nothing changed (7 unchanged)" in again.stdout


def test_bad_import_fails_with_file_and_line_and_writes_nothing(cli, keyturn_cli, keyturn_env) -> None:
    cli("import", str(DATA / "fleet.csv"), env=ENV, check=True)
    before = sqlite_dump(keyturn_env)
    bad = DATA / "bad" / "bad_port.csv"
    proc = keyturn_cli("import", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"keyturn: error: {bad}:3: port: 'ssh' is not a number 1-65535")
    assert "Traceback" not in proc.stderr and "Kt-bad-never-stored" not in proc.stderr
    assert sqlite_dump(keyturn_env) == before


def test_asset_add_list_show_edit_remove(cli) -> None:
    out = cli("asset", "add", "web1", "--address", "10.9.0.1", "--port", "2222", "--node", "/prod/web",
                      check=True).stdout
    assert "asset web1 added (10.9.0.1:2222, linux)" in out
    dup = cli("asset", "add", "web1", "--address", "10.9.0.2")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = cli("asset", "add", "web2", "--address", "10.9.0.2", "--platform", "beos")
    assert bad.returncode == 2 and "error: platform: must be one of linux, " in bad.stderr and "(got 'beos')" in bad.stderr
    cli("asset", "edit", "web1", "--port", "22", "--add-node", "/eu", "--inactive", check=True)
    listed = json.loads(cli("asset", "list", "--json", check=True).stdout)
    assert listed == [{"name": "web1", "address": "10.9.0.1", "port": 22, "platform": "linux", "active": False,
                       "comment": "", "nodes": ["/eu", "/prod/web"], "host_keys": []}]
    assert json.loads(cli("asset", "list", "--node", "/prod", "--json", check=True).stdout)[0]["name"] == "web1"
    shown = cli("asset", "show", "web1", check=True).stdout
    assert "nodes:     /eu, /prod/web" in shown and "none pinned" in shown
    tree = cli("node", "tree", check=True).stdout
    assert tree.splitlines() == ["eu  1 asset", "prod  1 asset (0 directly)", "  web  1 asset"]
    refused = cli("asset", "remove", "web1")  # no terminal and no --yes
    assert refused.returncode == 1 and "confirm on a terminal or pass --yes" in refused.stderr
    cli("asset", "remove", "web1", "--yes", check=True)
    assert cli("asset", "list", check=True).stdout.strip() == "no assets"
    missing = cli("asset", "show", "web1")
    assert missing.returncode == 1 and missing.stderr == "keyturn: error: no asset named 'web1'\n"


def test_account_add_password_from_stdin_is_never_shown_nor_stored_in_plaintext(cli, keyturn_cli, keyturn_env) -> None:
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    secret, become = "Kt-stdin-pw-90210", "Kt-stdin-become-31337"
    out = keyturn_cli("account", "add", "web1", "root", "--password-stdin", "--become-password-stdin", "--privileged",
                      input=f"{secret}\n{become}\n", check=True)
    assert "account root@web1 (password) created" in out.stdout
    listed = cli("account", "list", "--json", check=True).stdout
    assert json.loads(listed) == [{
        "asset": "web1", "username": "root", "secret_type": "password", "privileged": True, "can_change": True,
        "version": 1, "last_changed_at": json.loads(listed)[0]["last_changed_at"], "last_status": "",
        "has_secret": True, "has_become": True,
    }]
    shown = cli("asset", "show", "web1", "--json", check=True).stdout
    dumped = sqlite_dump(keyturn_env)
    for text in (out.stdout, out.stderr, listed, shown, dumped):
        assert secret not in text and become not in text
    # A second add sets a new secret; the first one is kept in the history (one more row), not lost.
    again = cli("account", "add", "web1", "root", "--password-stdin", input="Kt-stdin-pw-2\n", check=True)
    assert "updated; the previous secret is kept in its history" in again.stdout
    assert sqlite_dump(keyturn_env).count("INSERT INTO account_secret_history") == 1


def test_account_add_key_file_and_remove(cli) -> None:
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    key = DATA / "keys" / "admin_ed25519_enc"
    wrong = cli("account", "add", "web1", "deploy", "--key-file", str(key), "--key-passphrase-stdin",
                        input="not-the-phrase\n")
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    cli("account", "add", "web1", "deploy", "--key-file", str(key), "--key-passphrase-stdin",
                input="Kt-key-phrase-4419\n", check=True)
    cli("account", "add", "web1", "deploy", "--password-stdin", input="Kt-pw-x\n", check=True)
    table = cli("account", "list", "--asset", "web1", check=True).stdout
    assert [ln.split()[2] for ln in table.splitlines()[1:]] == ["password", "ssh_key"]
    ambiguous = cli("account", "remove", "web1", "deploy", "--yes")
    assert ambiguous.returncode == 1 and "name the secret type" in ambiguous.stderr
    cli("account", "remove", "web1", "deploy", "--type", "ssh-key", "--yes", check=True)
    left = json.loads(cli("account", "list", "--json", check=True).stdout)
    assert [(a["username"], a["secret_type"]) for a in left] == [("deploy", "password")]


def test_account_edit_changes_flags_and_keeps_the_secret(cli, keyturn_env) -> None:
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    cli("account", "add", "web1", "root", "--password-stdin", input="Kt-edit-pw-1\n", check=True)
    assert cli("account", "edit", "web1", "root", "--privileged", "--no-change", check=True).stdout == \
        "account root@web1 updated\n"
    assert cli("account", "edit", "web1", "root", "--privileged", check=True).stdout == "account root@web1 unchanged\n"
    [acc] = json.loads(cli("account", "list", "--json", check=True).stdout)
    assert (acc["privileged"], acc["can_change"], acc["version"]) == (True, False, 1)
    assert "INSERT INTO account_secret_history" not in sqlite_dump(keyturn_env)
    missing = cli("account", "edit", "web1", "nobody", "--privileged")
    assert missing.returncode == 1 and "no account 'nobody' on asset 'web1'" in missing.stderr


def test_account_edit_clears_the_become_password(cli, keyturn_env) -> None:
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    become = "Kt-clear-become-77"
    cli("account", "add", "web1", "root", "--password-stdin", "--privileged", "--become-password-stdin",
        input=f"Kt-clear-pw-1\n{become}\n", check=True)
    [acc] = json.loads(cli("account", "list", "--json", check=True).stdout)
    assert acc["has_become"] and "has sudo password" in cli("asset", "show", "web1", check=True).stdout
    both = cli("account", "edit", "web1", "root", "--clear-become-password", "--become-password-stdin", input="x\n")
    assert both.returncode == 2 and "not allowed with --clear-become-password" in both.stderr
    assert "--clear-become-password" in cli("account", "edit", "--help").stdout

    assert cli("account", "edit", "web1", "root", "--clear-become-password", check=True).stdout == \
        "account root@web1 updated\n"
    [acc] = json.loads(cli("account", "list", "--json", check=True).stdout)
    assert (acc["has_become"], acc["has_secret"], acc["version"], acc["privileged"]) == (False, True, 1, True)
    assert "sudo password" not in cli("asset", "show", "web1", check=True).stdout
    # Clearing again changes nothing and says so; the audit trail names the clearing, never the password.
    assert cli("account", "edit", "web1", "root", "--clear-become-password", check=True).stdout == \
        "account root@web1 unchanged\n"
    dumped = sqlite_dump(keyturn_env)
    assert dumped.count('"become": "cleared"') == 1 and become not in dumped


def test_password_stdin_needs_a_line(cli) -> None:
    cli("asset", "add", "web1", "--address", "10.9.0.1", check=True)
    proc = cli("account", "add", "web1", "root", "--password-stdin", input="")
    assert proc.returncode == 2 and "got end of input" in proc.stderr
    assert "--password" not in build_parser().parse_args(["account", "add", "a", "u", "--password-stdin"]).__dict__


COMMANDS = [
    ["import"], ["asset"], ["asset", "add"], ["asset", "list"], ["asset", "show"], ["asset", "remove"],
    ["asset", "edit"], ["asset", "trust"], ["account"], ["account", "add"], ["account", "list"],
    ["account", "edit"], ["account", "remove"], ["node"], ["node", "tree"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: keyturn {' '.join(command)}")
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 3  # a sentence saying what it does, not just the usage line


def test_help_in_a_real_process(keyturn_cli) -> None:
    out = " ".join(keyturn_cli("account", "add", "--help", check=True).stdout.split())
    assert "--password-stdin" in out and "Secrets come one per line on stdin" in out


def test_changes_are_audited_without_secrets(cli, ctx) -> None:
    from core.audit import list_events, verify_chain

    cli("import", str(DATA / "fleet.csv"), env=ENV, check=True)
    cli("import", str(DATA / "fleet.csv"), env=ENV, check=True)
    cli("asset", "add", "web9", "--address", "10.9.0.9", check=True)
    cli("account", "add", "web9", "root", "--password-stdin", input="Kt-audit-pw-5555\n", check=True)
    cli("account", "remove", "web9", "root", "--yes", check=True)
    cli("asset", "remove", "web9", "--yes", check=True)
    events = list(reversed(list_events(ctx, limit=20)))
    assert [(e.action, e.object_id, e.actor) for e in events] == [
        ("inventory.import", "fleet.csv", "tester"), ("inventory.import", "fleet.csv", "tester"),
        ("asset.add", "web9", "tester"), ("account.add", "root@web9", "tester"),
        ("account.remove", "root@web9", "tester"), ("asset.remove", "web9", "tester"),
    ]
    assert events[0].detail["assets_created"] == 4 and events[1].detail["unchanged"] == 9
    assert "Kt-" not in json.dumps([e.detail for e in events])
    assert verify_chain(ctx).ok
