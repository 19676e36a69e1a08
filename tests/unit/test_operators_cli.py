"""The operator, reveal and audit commands as a user runs them, on a real SQLite file.

The main flows run the real `keyturn` process (keyturn_cli); the many refusal cases call the same entry point,
tui.cli.main, inside the test process with the same environment, because a process start costs over a second.
"""

from __future__ import annotations

import io
import json
import subprocess
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from core.context import open_context
from core.mfa import code_at
from storage.inventory import upsert_account, upsert_asset

HALF_BLOCKS = set("\u2580\u2584\u2588 ")
ROOT_PW = "Tr0ub4dor&3-root"
APP_PW = "correct horse battery staple"


def now() -> datetime:
    return datetime.now(timezone.utc)


def fresh_step() -> None:
    """Wait out the last seconds of a 30 s step: a code from the step before must still be in the window when checked.

    Later calls take code(0), code(1) when they run, each a later step than the one accepted before it.
    """
    into = time.time() % 30
    if into > 25:
        time.sleep(30 - into + 0.2)


def code(secret: str, steps: int = 0) -> str:
    """The code for the current step plus `steps`."""
    return code_at(secret, now() + timedelta(seconds=30 * steps))


def secret_from(stdout: str) -> str:
    uri = next(w for w in stdout.split() if w.startswith("otpauth://"))
    return parse_qs(urlparse(uri).query)["secret"][0]


@pytest.fixture
def cli(keyturn_env, monkeypatch, capsys):
    """tui.cli.main in this process with the test's environment; returns a CompletedProcess like keyturn_cli."""
    from tui.cli import main

    def run(*args: str, input: str | None = None, check: bool = False, env: dict[str, str] | None = None):
        for key, value in {**keyturn_env, **(env or {})}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr("sys.stdin", io.StringIO(input or ""))
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        proc = subprocess.CompletedProcess(["keyturn", *args], code, out, err)
        if check and code != 0:
            raise AssertionError(f"keyturn {' '.join(args)} exited {code}\nstdout:\n{out}\nstderr:\n{err}")
        return proc

    return run


@pytest.fixture
def inventory(settings):
    """Asset web1 with accounts root and app, written through storage as an import would."""
    ctx = open_context(settings, operator="tester", source="pytest")
    try:
        with ctx.db.write() as s:
            asset, _ = upsert_asset(s, "web1", address="127.0.0.2")
            upsert_account(ctx.db, s, asset, "root", secret=ROOT_PW, privileged=True)
            upsert_account(ctx.db, s, asset, "app", secret=APP_PW)
    finally:
        ctx.close()


@pytest.fixture
def alice(cli, inventory):
    """Operator alice, enrolled and confirmed with the previous step's code; returns her TOTP secret."""
    fresh_step()
    cli("operator", "add", "alice", "--email", "alice@example.org", check=True)
    secret = secret_from(cli("operator", "enrol", "--operator", "alice", check=True).stdout)
    cli("operator", "confirm", "alice", input=code(secret, -1) + "\n", check=True)
    return secret


def audit_events(run, *args: str) -> list[dict]:
    return json.loads(run("audit", "list", "--json", "--limit", "500", *args, check=True).stdout)


def test_operator_enrol_prints_uri_and_half_block_qr_to_the_person_only(keyturn_cli):
    added = keyturn_cli("operator", "add", "alice", "--email", "alice@example.org", check=True)
    assert "otpauth" not in added.stdout and "\u2584" not in added.stdout  # the admin never sees the seed
    assert "alice now enrols their phone at their own terminal: keyturn operator enrol" in added.stdout
    result = keyturn_cli("operator", "enrol", "--operator", "alice", check=True)
    assert "otpauth://totp/keyturn:alice?secret=" in result.stdout and "issuer=keyturn" in result.stdout
    qr = [line for line in result.stdout.splitlines() if line and set(line) <= HALF_BLOCKS]
    assert len(qr) >= 15 and len({len(line) for line in qr}) == 1 and len(qr[0]) >= 29
    assert qr[0] == "\u2588" * len(qr[0])  # quiet zone, drawn light
    secret = secret_from(result.stdout)

    listed = keyturn_cli("operator", "list", "--json", check=True)
    assert json.loads(listed.stdout)[0] | {"created_at": None} == {
        "name": "alice", "email": "alice@example.org", "confirmed": False, "failed_attempts": 0, "locked_until": None,
        "created_at": None}
    assert secret not in listed.stdout


def test_operator_add_refuses_bad_input(cli):
    cli("operator", "add", "alice", "--email", "alice@example.org", check=True)
    secret = secret_from(cli("operator", "enrol", "--operator", "alice", check=True).stdout)
    events = cli("audit", "list", "--json", check=True).stdout
    assert '"operator.add"' in events and secret not in events
    bad = cli("operator", "add", "alice", "--email", "alice@example.org")
    assert bad.returncode == 2 and "keyturn: error: operator 'alice' already exists" in bad.stderr
    bad = cli("operator", "add", "bob", "--email", "not-an-address")
    assert bad.returncode == 2 and "email 'not-an-address'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("operator", "add", "scheduler", "--email", "s@example.org")
    assert bad.returncode == 2 and "reserved" in bad.stderr
    assert cli("operator", "confirm", "nosuch", input="123456\n").stderr == "keyturn: error: no operator named 'nosuch'\n"
    in_argv = cli("operator", "confirm", "alice", "123456")
    assert in_argv.returncode == 2 and "never an argument" in in_argv.stderr


def test_reveal_with_a_code_prints_secrets_and_audits_each(keyturn_cli, cli, alice):
    listed = cli("operator", "list", check=True)
    assert "alice" in listed.stdout and "confirmed" in listed.stdout and "unconfirmed" not in listed.stdout

    # To a pipe (not a terminal) a secret goes only with --json; the code and reason never on the command line.
    piped = keyturn_cli("reveal", "web1", "root", "--operator", "alice", "--reason", "T-1", input=code(alice) + "\n")
    assert piped.returncode == 2 and piped.stdout == "" and "only with --json" in piped.stderr
    shown = keyturn_cli("reveal", "web1", "root", "web1", "app", "--operator", "alice", "--json", "--reason", "T-1",
                        input=code(alice) + "\n", check=True)
    assert [(i["asset"], i["username"], i["secret"]) for i in json.loads(shown.stdout)] == [
        ("web1", "root", ROOT_PW), ("web1", "app", APP_PW)]

    shown = keyturn_cli("--operator", "alice", "reveal", "--json", "web1", "app", "--reason", "T-1", input=code(alice, 1) + "\n", check=True)
    assert [(i["asset"], i["username"], i["secret"]) for i in json.loads(shown.stdout)] == [("web1", "app", APP_PW)]

    reveals = audit_events(cli, "--action", "secret.reveal")
    assert {e["detail"]["reason"] for e in reveals} == {"T-1"}
    assert [(e["actor"], e["object_type"], e["detail"]["username"]) for e in reveals] == [
        ("alice", "account", "app"), ("alice", "account", "app"), ("alice", "account", "root")]
    everything = cli("audit", "list", "--json", "--limit", "500", check=True).stdout
    assert ROOT_PW not in everything and APP_PW not in everything and alice not in everything
    verified = cli("audit", "verify")
    assert verified.returncode == 0 and "audit trail ok" in verified.stdout


def test_wrong_or_replayed_code_prints_nothing(cli, alice):
    good = code(alice)
    wrong = "000000" if good != "000000" else "111111"
    refused = cli("reveal", "web1", "root", "--operator", "alice", "--json", "--reason", "T-1", input=wrong + "\n")
    assert refused.returncode == 3 and refused.stdout == ""
    assert "wrong code" in refused.stderr and "4 tries left" in refused.stderr and ROOT_PW not in refused.stderr

    cli("reveal", "web1", "root", "--operator", "alice", "--json", "--reason", "T-1", input=good + "\n", check=True)
    replay = cli("reveal", "web1", "root", "--operator", "alice", "--json", "--reason", "T-1", input=good + "\n")
    assert replay.returncode == 3 and replay.stdout == "" and "already used" in replay.stderr

    actions = [e["action"] for e in audit_events(cli, "--action", "mfa.*")]
    assert actions == ["mfa.failed", "mfa.ok", "mfa.failed"]


def test_unconfirmed_operator_cannot_reveal(cli, inventory):
    cli("operator", "add", "carol", "--email", "carol@example.org", check=True)
    added = cli("operator", "enrol", "--operator", "carol", check=True)
    refused = cli("reveal", "web1", "root", "--operator", "carol", "--json", "--reason", "T-1", input=code(secret_from(added.stdout)) + "\n")
    assert refused.returncode == 3 and refused.stdout == "" and "not confirmed" in refused.stderr


def test_non_operator_cannot_reveal_once_an_operator_exists(cli, alice):
    refused = cli("reveal", "web1", "root", "--json", "--reason", "T-1", input=code(alice) + "\n", env={"KEYTURN_OPERATOR": "nobody"})
    assert refused.returncode == 3 and refused.stdout == ""
    assert "keyturn: error: 'nobody' is not a keyturn operator" in refused.stderr
    # Browsing stays open.
    assert cli("audit", "list", env={"KEYTURN_OPERATOR": "nobody"}).returncode == 0


def test_reveal_fails_closed_when_the_audit_trail_cannot_be_written(cli, alice, settings):
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    conn.execute("CREATE TRIGGER no_reveal_audit BEFORE INSERT ON audit_event WHEN NEW.action = 'secret.reveal' "
                 "BEGIN SELECT RAISE(ABORT, 'audit disk is full'); END")
    conn.close()
    refused = cli("reveal", "web1", "root", "--operator", "alice", "--json", "--reason", "T-1", input=code(alice) + "\n")
    assert refused.returncode == 4 and refused.stdout == ""
    assert "audit trail could not be written (audit disk is full)" in refused.stderr and "nothing is revealed" in refused.stderr
    assert ROOT_PW not in refused.stderr and "Traceback" not in refused.stderr


def test_reveal_argument_errors(cli, alice):
    odd = cli("reveal", "web1", "root", "web2", "--json", "--reason", "T-1", input="123456" + "\n")
    assert odd.returncode == 2 and "'web2' has no user" in odd.stderr
    none = cli("reveal", "--json", "--reason", "T-1", input="123456" + "\n")
    assert none.returncode == 2 and "exactly one" in none.stderr
    missing = cli("reveal", "web1", "nosuch", "--operator", "alice", "--json", "--reason", "T-1", input=code(alice) + "\n")
    assert missing.returncode == 1 and "no account 'nosuch' on asset 'web1'" in missing.stderr


def test_managing_operators_needs_the_acting_operators_code(cli, alice):
    # Acting as alice without a code (stdin is not a terminal and empty): refused, nothing added.
    refused = cli("operator", "add", "bob", "--email", "bob@example.org", "--operator", "alice")
    assert refused.returncode == 2 and "TOTP code is needed" in refused.stderr
    added = cli("operator", "add", "bob", "--email", "bob@example.org", "--operator", "alice",
                input=code(alice) + "\n", check=True)
    assert "otpauth" not in added.stdout  # alice never holds bob's second factor
    not_alice = cli("operator", "enrol", "--operator", "alice")
    assert not_alice.returncode == 3 and "'alice' is already enrolled" in not_alice.stderr
    bob = secret_from(cli("operator", "enrol", "--operator", "bob", check=True).stdout)
    stranger = cli("operator", "confirm", "bob", input=code(bob) + "\n")  # tester may not confirm (or lock out) bob
    assert stranger.returncode == 3 and "only 'bob' may confirm their own enrolment" in stranger.stderr
    cli("operator", "confirm", "bob", "--operator", "bob", input=code(bob) + "\n", check=True)
    reset = cli("operator", "reset-mfa", "bob", "--operator", "alice", input=code(alice, 1) + "\n", check=True)
    assert "otpauth" not in reset.stdout and "bob enrols a new phone at their own terminal" in reset.stdout
    gone = cli("operator", "remove", "bob", "--yes", "--operator", "bob", input=code(bob, 1) + "\n")
    assert gone.returncode == 3 and "not confirmed" in gone.stderr  # bob must re-enrol first
    assert secret_from(cli("operator", "enrol", "--operator", "bob", check=True).stdout) != bob
    names = [o["name"] for o in json.loads(cli("operator", "list", "--json", check=True).stdout)]
    assert names == ["alice", "bob"]


def test_audit_verify_reports_a_tampered_event(cli, alice, settings):
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    conn.execute("UPDATE audit_event SET actor = 'mallory' WHERE id = 1")
    conn.close()
    broken = cli("audit", "verify")
    assert broken.returncode == 1 and "BROKEN at event 1" in broken.stdout


def test_reveal_a_record_and_a_task(cli, alice, settings):
    """Old and new secrets stay on the record; --task shows the accounts of the task's latest run."""
    from core.mfa import MfaSession
    from core.reveal import reveal_record
    from storage.executions import PendingItem, add_pending_records, create_execution, settle_success
    from storage.operators import account_ref

    new_pw = "n3w-R0tated-secret"
    ctx = open_context(settings, operator="alice", source="pytest")
    try:
        root = account_ref(ctx.db, "web1", "root").account_id
        execution = create_execution(ctx.db, task_id=None, task_name="rotate-web", trigger="cli", operator="alice",
                                     snapshot={}, pid=1, hostname="test")
        (record,) = add_pending_records(ctx.db, execution, [PendingItem(root, new_pw)])
        settle_success(ctx.db, record)

        old = cli("reveal", "--record", str(record), "--old", "--operator", "alice", "--json", "--reason", "T-1", input=code(alice) + "\n", check=True)
        assert [i["secret"] for i in json.loads(old.stdout)] == [ROOT_PW]
        task = cli("reveal", "--task", "rotate-web", "--json", "--operator", "alice", "--reason", "T-1", input=code(alice, 1) + "\n", check=True)
        assert [(i["username"], i["secret"], i["which"]) for i in json.loads(task.stdout)] == [("root", new_pw, "current")]

        # In-process, an unlock lasts for several reveals (one code, many secrets, each audited).
        later = now() + timedelta(minutes=10)
        mfa = MfaSession(settings, clock=lambda: later)
        mfa.unlock(ctx, code_at(alice, later))
        assert [i.secret for i in reveal_record(ctx, mfa, record, "new", reason="T-2")] == [new_pw]
        missing = cli("reveal", "--task", "no-such-task", "--operator", "alice", "--json", "--reason", "T-1", input=code(alice) + "\n")
        assert missing.returncode == 1 and missing.stdout == "" and "no task named 'no-such-task'" in missing.stderr
    finally:
        ctx.close()
    details = [(e["object_type"], e["detail"]["which"]) for e in audit_events(cli, "--action", "secret.reveal")]
    assert details == [("change_record", "new"), ("account", "current"), ("change_record", "old")]


def test_operator_enrol_at_a_terminal_shows_the_code_and_asks_for_the_first_one(keyturn_cli, keyturn_env):
    """The person's own terminal (a pty): QR code and URI, then the code is asked without echo and confirms."""
    import os
    import pty
    import re
    import select
    import sys

    keyturn_cli("operator", "add", "alice", "--email", "alice@example.org", check=True)
    pid, fd = pty.fork()
    if pid == 0:  # the child: keyturn as a user starts it, at a terminal
        os.execve(sys.executable, [sys.executable, "-m", "tui", "--operator", "alice", "operator", "enrol"],
                  {**os.environ, **keyturn_env})
    out, answered, deadline = b"", None, time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        found = re.search(rb"secret=([A-Z2-7]+)", out)
        if found and answered is None and b"TOTP code for alice" in out:
            answered = code(found.group(1).decode())
            os.write(fd, (answered + "\n").encode())
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "\u2584" in text and "operator alice confirmed: TOTP enrolment works" in text
    assert answered is not None and text.count(answered) == 0  # typed without echo
    listed = json.loads(keyturn_cli("operator", "list", "--json", check=True).stdout)
    assert [o["confirmed"] for o in listed] == [True]
