"""Findings 1 and 2 against the README's sudo deployment (tests/security/deployment.py).

1: through sudo, mallory (in pam-admins, no operator) typed `--operator alice`, edited web1's address and
   had the audit trail name alice. Now the acting person is the user sudo names: `--operator` is refused,
   the trail names mallory and the SSH client she came from, and she may not change anything. Only the
   service itself may run the scheduler; nobody but alice may confirm (or lock out) alice's enrolment.
2: `reveal --otp CODE` put the code in every user's `ps`. Now --otp is refused before the code is used, and
   the code travels as one line of stdin, never in any process's argv.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from urllib.parse import parse_qs, urlparse

import pytest

from core.mfa import code_at
from tests.security.deployment import DATA, Deployment

pytestmark = pytest.mark.sshd

APP_PW = "Corr3ct-horse-battery"


_LAST_STEP = [0]


def _code(secret: str, steps: int | None = None) -> str:
    """A code keyturn has not seen yet: of a 30 s step later than the last one used (waits for it if needed).

    Without `steps`, the code of the current step or else of the next one: keyturn accepts a step either side
    of now (mfa.WINDOW) and each step once, so a test needing several codes waits out a step only when both are
    spent. Both stay valid for at least 30 s, however late in its step the code is made.
    """
    from datetime import datetime, timezone

    while True:
        now = int(time.time() // 30)
        chosen = next((s for s in ((0, 1) if steps is None else (steps,)) if now + s > _LAST_STEP[0]), None)
        if chosen is not None:
            break
        time.sleep(0.5)
    _LAST_STEP[0] = now + chosen
    return code_at(secret, datetime.fromtimestamp((now + chosen) * 30 + 1, timezone.utc))


@pytest.fixture(scope="module")
def alice_secret(deployment: Deployment) -> str:
    """web1 with account app; alice added by the administrator, enrolled and confirmed at her own terminal."""
    d = deployment
    for args, stdin in ((("asset", "add", "web1", "--address", "127.0.0.1", "--node", "/prod"), None),
                        (("account", "add", "web1", "app", "--password-stdin"), APP_PW + "\n")):
        p = d.as_root(*args, input=stdin)
        assert p.returncode == 0, p.stderr
    added = d.as_root("operator", "add", "alice", "--email", "alice@example.org")
    assert added.returncode == 0, added.stderr
    assert "otpauth" not in added.stdout  # the administrator never sees alice's seed (finding 10)
    enrol = d.keyturn("alice", "operator", "enrol")
    assert enrol.returncode == 0, enrol.stderr
    uri = next(w for w in enrol.stdout.split() if w.startswith("otpauth://"))
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    into = time.time() % 30
    if into > 24:
        time.sleep(30 - into + 0.5)
    p = d.keyturn("alice", "operator", "confirm", "alice", input=_code(secret, -1) + "\n")
    assert p.returncode == 0, p.stderr
    return secret


@pytest.fixture(autouse=True)
def _codes_from_this_step(deployment: Deployment, alice_secret: str) -> None:
    """Each test starts with alice's codes of the current step unspent: keyturn refuses a step at or before the
    last one accepted, so the module's codes (one or two per test) cost a 30 s step each once the window's three
    were used. These tests prove who acts and how a code travels; replay refusal is proved in tests/unit/test_mfa.py
    and tests/unit/test_concurrency.py. Set as the service user, like every other write to its database.
    """
    forget = deployment.host.run(["setpriv", "--reuid=keyturn", "--regid=keyturn", "--init-groups", "sqlite3",
                                  "-cmd", ".timeout 10000", f"{DATA}/keyturn.db",
                                  "UPDATE operator SET last_totp_step = NULL WHERE name = 'alice'"])
    assert forget.returncode == 0, forget.stderr
    _LAST_STEP[0] = 0


def _events(d: Deployment, action: str) -> list[dict]:
    p = d.as_root("audit", "list", "--json", "--limit", "500", "--action", action)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_typed_operator_name_is_refused_and_the_trail_names_the_real_person(deployment: Deployment,
                                                                              alice_secret: str) -> None:
    d = deployment
    for args in (("--operator", "alice", "asset", "edit", "web1", "--address", "10.6.6.6"),
                 ("asset", "edit", "web1", "--address", "10.6.6.6", "--operator", "alice")):
        p = d.keyturn("mallory", *args)
        assert p.returncode == 3, (p.stdout, p.stderr)
        assert "--operator is refused when keyturn runs through sudo: you act as 'mallory'" in p.stderr
    p = d.keyturn("mallory", "asset", "edit", "web1", "--address", "10.6.6.6")
    assert p.returncode == 3 and "'mallory' is not a keyturn operator" in p.stderr
    shown = json.loads(d.as_root("asset", "list", "--json").stdout)
    assert [a["address"] for a in shown if a["name"] == "web1"] == ["127.0.0.1"]  # nothing changed
    # What mallory may do (browse) is attributed to her, with the address she came from.
    assert d.keyturn("mallory", "asset", "list").returncode == 0
    p = d.keyturn("alice", "reveal", "--json", "web1", "app", "--reason", "INC-7", input=_code(alice_secret) + "\n")
    assert p.returncode == 0, p.stderr
    [event] = _events(d, "secret.reveal")
    assert event["actor"] == "alice" and event["detail"]["reason"] == "INC-7"
    assert re.fullmatch(r"ssh 127\.0\.0\.1 no-tty", event["source"]), event["source"]


def test_only_the_service_runs_the_scheduler(deployment: Deployment, alice_secret: str) -> None:
    for person in ("mallory", "alice"):
        p = deployment.keyturn(person, "scheduler", "--once")
        assert p.returncode == 3 and "runs only as keyturn's own service" in p.stderr, (person, p.stderr)
    assert deployment.as_root("scheduler", "--once").returncode == 0  # systemd's way: as the user itself


def test_nobody_else_can_confirm_or_lock_out_alice(deployment: Deployment, alice_secret: str) -> None:
    d = deployment
    for _ in range(6):
        p = d.keyturn("mallory", "operator", "confirm", "alice", input="000000\n")
        assert p.returncode == 3 and "only 'alice' may confirm" in p.stderr
    listed = json.loads(d.as_root("operator", "list", "--json").stdout)
    alice = next(o for o in listed if o["name"] == "alice")
    assert alice["failed_attempts"] == 0 and alice["locked_until"] is None


def test_a_new_operator_enrols_at_their_own_terminal(deployment: Deployment, alice_secret: str) -> None:
    """Finding 10: alice adds dave and never sees his seed; nobody but dave (the user sudo names) can enrol him."""
    d = deployment
    added = d.keyturn("alice", "operator", "add", "dave", "--email", "dave@example.org", input=_code(alice_secret) + "\n")
    assert added.returncode == 0, added.stderr
    assert "otpauth" not in added.stdout and "dave now enrols their phone at their own terminal" in added.stdout
    p = d.keyturn("mallory", "operator", "enrol")
    assert p.returncode == 1 and "no operator named 'mallory'" in p.stderr, p.stderr
    p = d.keyturn("alice", "operator", "enrol")
    assert p.returncode == 3 and "'alice' is already enrolled" in p.stderr and "otpauth" not in p.stdout
    p = d.keyturn("mallory", "operator", "enrol", "--operator", "dave")
    assert p.returncode == 3 and "--operator is refused" in p.stderr and "otpauth" not in p.stdout
    listed = json.loads(d.as_root("operator", "list", "--json").stdout)
    assert [o["confirmed"] for o in listed if o["name"] == "dave"] == [False]
    assert "operator.enrol" not in {e["action"] for e in _events(d, "operator.*") if e["object_id"] == "dave"}


def test_a_code_is_never_an_argument(deployment: Deployment, alice_secret: str) -> None:
    d = deployment
    code = _code(alice_secret)
    p = d.keyturn("alice", "reveal", "--json", "web1", "app", "--reason", "INC-8", "--otp", code)
    assert p.returncode == 2 and p.stdout == "" and "--otp is refused" in p.stderr and "printf" in p.stderr
    p = d.keyturn("alice", "operator", "confirm", "alice", code)
    assert p.returncode == 2 and "never an argument" in p.stderr

    # While alice reveals with the code on stdin, every process's argv on the machine is watched for it.
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            argv = fh.read().decode(errors="replace")
                    except OSError:
                        continue
                    if code in argv:
                        seen.append(argv)

    t = threading.Thread(target=watch)
    t.start()
    try:
        p = d.keyturn("alice", "reveal", "--json", "web1", "app", "--reason", "INC-8", input=code + "\n")
    finally:
        stop.set()
        t.join()
    assert p.returncode == 0, p.stderr  # the code was not spent by the refused attempts above
    assert [i["secret"] for i in json.loads(p.stdout)] == [APP_PW]
    assert seen == []


def test_changes_that_can_redirect_a_secret_need_a_fresh_code(deployment: Deployment, alice_secret: str) -> None:
    d = deployment
    h = d.host
    key_type, b64 = h.host_key.split()[:2]
    h.write_file("/tmp/known_hosts", f"127.0.0.1 {key_type} {b64}\n", mode=0o644)
    p = d.keyturn("alice", "import", "--known-hosts", "/tmp/known_hosts", input=_code(alice_secret) + "\n")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(d.as_root("asset", "show", "web1", "--json").stdout)["host_keys"]) == 1
    # No code (stdin empty, no terminal): nothing changes.
    p = d.keyturn("alice", "asset", "edit", "web1", "--address", "127.0.0.9")
    assert p.returncode == 2 and "TOTP code is needed" in p.stderr
    assert json.loads(d.as_root("asset", "show", "web1", "--json").stdout)["address"] == "127.0.0.1"
    p = d.keyturn("alice", "task", "create", "rot", "--accounts", "app", "--node", "/prod")
    assert p.returncode == 2 and "TOTP code is needed" in p.stderr
    # With her code on stdin: the address changes and the keys pinned for the old one are gone.
    p = d.keyturn("alice", "asset", "edit", "web1", "--address", "127.0.0.9", input=_code(alice_secret) + "\n")
    assert p.returncode == 0, p.stderr
    shown = json.loads(d.as_root("asset", "show", "web1", "--json").stdout)
    assert shown["address"] == "127.0.0.9" and shown["host_keys"] == []
