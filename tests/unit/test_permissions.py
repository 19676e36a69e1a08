"""Once an operator is enrolled, a person who is not one may browse but not run, edit or rotate keys."""

from __future__ import annotations

import pyotp
import pytest

from core.context import Context
from core.operators import add_operator, confirm_enrolment, start_enrolment
from tui.cli import main

# Storage, engine, scheduler, MFA rules: the same on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_backends


@pytest.fixture
def enrolled(ctx: Context) -> str:
    add_operator(ctx, "alice", "alice@example.org")
    enrolment = start_enrolment(ctx, "alice")
    confirm_enrolment(ctx, "alice", pyotp.parse_uri(enrolment.uri).now())
    return "alice"


def _run(monkeypatch, keyturn_env: dict[str, str], who: str, *argv: str) -> int:
    for key, value in keyturn_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KEYTURN_OPERATOR", who)
    return main(list(argv))


@pytest.mark.parametrize("argv", [
    ("asset", "add", "web9", "--address", "192.0.2.9"),
    ("task", "create", "t1", "--accounts", "app", "--asset", "web9"),
    ("key", "rotate"),
    ("mail", "test", "x@example.org"),
])
def test_non_operator_cannot_change_anything(monkeypatch, keyturn_env, enrolled, capsys, argv) -> None:
    assert _run(monkeypatch, keyturn_env, "mallory", *argv) == 3
    err = capsys.readouterr().err
    assert "'mallory' is not a keyturn operator" in err and "Traceback" not in err


def test_non_operator_may_browse_and_operator_may_edit(monkeypatch, keyturn_env, enrolled, capsys) -> None:
    assert _run(monkeypatch, keyturn_env, "mallory", "asset", "list", "--json") == 0
    assert _run(monkeypatch, keyturn_env, "alice", "asset", "add", "web9", "--address", "192.0.2.9") == 0
    assert _run(monkeypatch, keyturn_env, "mallory", "asset", "list", "--json") == 0
    assert "web9" in capsys.readouterr().out


def test_before_any_operator_everyone_may_edit(monkeypatch, keyturn_env, ctx) -> None:
    assert _run(monkeypatch, keyturn_env, "anyone", "asset", "add", "web9", "--address", "192.0.2.9") == 0
