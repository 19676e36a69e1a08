"""`keyturn asset list` read without the ORM (core/quicklist.py) prints what the full path prints.

Each case runs the command line's main() twice in this process, once as a user runs it and once with
quick=False (always the full path: open_context, the permission check, core.listings), and compares exit code,
stdout and stderr byte for byte. core.quicklist.list_assets is also called directly, so each case says
whether the quick reader really answered (not None) or handed over to the full path (None).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from core import operators as ops
from core import quicklist
from core.config import Settings
from core.context import Context
from core.mfa import MfaFailed, code_at, mfa_status, verify_code
from core.scopes import set_scope
from core.services import inventory as svc
from tui.cli import main

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
LISTINGS = ([], ["--json"], ["--node", "/prod"], ["--node", "/prod/db/"], ["--node", "/dev"], ["--node", "/PROD"],
            ["--node", "/nope"], ["--node", "/"], ["--node", "/prod", "--json"])
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def env(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment as a keyturn child's: main() reads the data dir and operator from it."""
    for name in [n for n in os.environ if n.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    for name, value in keyturn_env.items():
        monkeypatch.setenv(name, value)
    return keyturn_env


def _main(capsys: pytest.CaptureFixture[str], argv: list[str], *, quick: bool) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv, quick=quick)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def _same(capsys: pytest.CaptureFixture[str], settings: Settings, operator: str, args: list[str]) -> bool:
    """Run `keyturn [--operator OP] asset list ARGS` both ways, assert the same output; whether the quick
    reader answered."""
    argv = ["--operator", operator, "asset", "list", *args]
    quick = _main(capsys, argv, quick=True)
    full = _main(capsys, argv, quick=False)
    assert quick == full, f"keyturn {' '.join(argv)}"
    assert "Traceback" not in quick[2]
    node = args[args.index("--node") + 1] if "--node" in args else None
    return quicklist.list_assets(settings, operator, node=node) is not None


def _pin(ctx: Context, tmp_path: Path, lines: str) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(lines)
    svc.import_known_hosts_file(ctx, kh)


def _fleet(ctx: Context, tmp_path: Path) -> None:
    """Nested nodes, pinned keys, an inactive asset, database assets (one through a gateway), one without node,
    and node names that LIKE patterns could confuse (`_`, upper case)."""
    svc.add_asset(ctx, "web1", address="10.0.0.1", nodes=["/prod/web"], comment="front")
    svc.add_asset(ctx, "web2", address="10.0.0.2", port=2222, nodes=["/prod/web", "/dev"], active=False,
                  comment="old box")
    svc.add_asset(ctx, "pg1", address="10.0.1.1", platform="postgresql", nodes=["/prod/db"], database="app",
                  tls="require", ca_file="/etc/ssl/certs/ca.pem", connect_timeout=5, command_timeout=20.5,
                  gateway="web1")
    svc.add_asset(ctx, "cache1", address="10.0.1.2", platform="redis", port=6380, nodes=["/prod/db/cache"])
    svc.add_asset(ctx, "my1", address="10.0.1.3", platform="mariadb", nodes=["/prod/db"], tls="verify-full")
    svc.add_asset(ctx, "lonely", address="lonely.example.org")
    svc.add_asset(ctx, "odd_1", address="10.0.2.1", nodes=["/prod_x/y"])
    svc.add_asset(ctx, "upper", address="10.0.2.2", nodes=["/Prod/up"])
    _pin(ctx, tmp_path, f"10.0.0.1 ssh-ed25519 {KEY}\n[10.0.0.2]:2222 ssh-ed25519 {KEY}\n")


def test_an_empty_vault_lists_alike(ctx: Context, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    answered = [_same(capsys, ctx.settings, "tester", args) for args in LISTINGS]
    # Only a node that does not exist, or is no path, is left to the full path's wording.
    assert answered == [True, True, False, False, False, False, False, False, False]
    assert _main(capsys, ["asset", "list"], quick=True) == (0, "no assets\n", "")


def test_a_fleet_lists_alike_for_every_operator_and_node(ctx: Context, env: dict[str, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _fleet(ctx, tmp_path)
    for name in ("alice", "bob", "carol"):
        ops.add_operator(ctx, name, f"{name}@example.org")
    set_scope(ctx, "alice", ["/prod/db"])  # a node scope (with a subtree below it)
    set_scope(ctx, "bob", ["/dev", "/prod/web"])  # two scope nodes; web2 lies in both
    # carol: an operator without a scope; mallory: not an operator (operators are not enforced yet)
    for operator in ("tester", "alice", "bob", "carol", "mallory"):
        answered = [_same(capsys, ctx.settings, operator, args) for args in LISTINGS]
        assert answered == [True, True, True, True, True, False, False, False, True], operator
    code, out, _ = _main(capsys, ["--operator", "alice", "asset", "list"], quick=True)
    assert code == 0 and out.split()[7::7] == ["cache1", "my1", "pg1"]  # her scope only, by name


def test_enforced_operators_list_alike(ctx: Context, env: dict[str, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _fleet(ctx, tmp_path)
    for name in ("alice", "dave", "erin"):
        ops.add_operator(ctx, name, f"{name}@example.org")
    set_scope(ctx, "alice", ["/prod/web"])
    set_scope(ctx, "erin", ["/prod/db/cache"])
    secrets = {}
    for name in ("alice", "erin"):
        ctx.operator = name  # once alice is enrolled, only erin herself may enrol erin
        enrolment = ops.start_enrolment(ctx, name)
        secrets[name] = parse_qs(urlparse(enrolment.uri).query)["secret"][0]
        ops.confirm_enrolment(ctx, name, code_at(secrets[name], T0), now=T0)
    assert ops.is_enforcing(ctx)
    # erin locked out by wrong codes: `asset list` needs no code, so she still browses her scope
    for i in range(ctx.settings.mfa_max_failures):
        now = datetime.now(timezone.utc) + timedelta(seconds=i)  # the lockout runs from now
        wrong = "000000" if code_at(secrets["erin"], now) != "000000" else "111111"
        with pytest.raises(MfaFailed):
            verify_code(ctx, "erin", wrong, now=now)
    assert mfa_status(ctx, "erin").locked_until is not None
    # alice scoped and confirmed, dave added but not enrolled, erin locked, mallory not an operator
    for operator in ("alice", "dave", "erin", "mallory"):
        for args in ([], ["--json"], ["--node", "/prod"], ["--node", "/dev"]):
            assert _same(capsys, ctx.settings, operator, args), (operator, args)


def _foreign_master_key(settings: Settings) -> None:
    (settings.home / "master.key").write_bytes(os.urandom(32))


def _stray_old_key(settings: Settings) -> None:
    (settings.home / "master.key.old-x").write_bytes(os.urandom(32))
    (settings.home / "master.key.old-x").chmod(0o644)


def _tamper_key_check(settings: Settings) -> None:
    with sqlite3.connect(settings.db_path) as conn:
        (blob,) = conn.execute("SELECT value_enc FROM vault_item WHERE name = 'vault.key-check'").fetchone()
        conn.execute("UPDATE vault_item SET value_enc = ? WHERE name = 'vault.key-check'",
                     (blob[:-1] + bytes([blob[-1] ^ 1]),))  # the same key id, a tag that no longer verifies
    conn.close()


def _sql(statement: str) -> Callable[[Settings], None]:
    def run(settings: Settings) -> None:
        with sqlite3.connect(settings.db_path) as conn:
            conn.execute(statement)
        conn.close()
    return run


REFUSED_OR_HANDED_OVER: dict[str, Callable[[Settings], object]] = {
    "data dir readable by others": lambda s: s.home.chmod(0o755),
    "master key readable by others": lambda s: (s.home / "master.key").chmod(0o644),
    "audit key readable by others": lambda s: (s.home / "audit.key").chmod(0o640),
    "master key of another vault": _foreign_master_key,
    "an old master key readable by others": _stray_old_key,
    "master key missing": lambda s: (s.home / "master.key").unlink(),
    "audit key missing": lambda s: (s.home / "audit.key").unlink(),
    "key check value missing": _sql("DELETE FROM vault_item WHERE name = 'vault.key-check'"),
    "key check value tampered": _tamper_key_check,
    "a port stored as text": _sql("UPDATE asset SET port = 'twenty-two' WHERE name = 'web1'"),
    "database emptied": lambda s: s.db_path.write_bytes(b""),
}


@pytest.mark.parametrize("state", list(REFUSED_OR_HANDED_OVER))
def test_refusals_and_unusual_states_are_the_full_paths(ctx: Context, env: dict[str, str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], state: str) -> None:
    _fleet(ctx, tmp_path)
    ctx.close()
    for suffix in ("-wal", "-shm"):  # the state is made on the file itself, after a clean close
        ctx.settings.db_path.with_name(ctx.settings.db_path.name + suffix).unlink(missing_ok=True)
    REFUSED_OR_HANDED_OVER[state](ctx.settings)
    assert quicklist.list_assets(ctx.settings, "tester") is None
    argv = ["asset", "list", "--json"]
    quick = _main(capsys, argv, quick=True)
    full = _main(capsys, argv, quick=False)
    assert quick == full
    assert "Traceback" not in quick[2]


def test_an_older_schema_is_left_to_the_migrations(ctx: Context, env: dict[str, str]) -> None:
    svc.add_asset(ctx, "web1", address="10.0.0.1")
    assert quicklist.list_assets(ctx.settings, "tester") is not None
    _sql("UPDATE alembic_version SET version_num = '0007'")(ctx.settings)
    assert quicklist.list_assets(ctx.settings, "tester") is None
