"""Data directory and master key: created private, refused when exposed, rotation that loses nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlmodel import select

from core.config import Settings
from core.context import open_context
from core.errors import UnsafeSetupError
from storage import inventory
from storage.keyrotate import pending_key_path, rotate_master_key
from storage.keyfile import read_key, write_key
from storage.tables import Account


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _add_account(ctx, name: str = "web1", secret: str = "s3cret-value") -> int:
    with ctx.db.write() as s:
        asset, _ = inventory.upsert_asset(s, name, address="10.0.0.1")
        acc, _ = inventory.upsert_account(ctx.db, s, asset, "root", secret=secret, privileged=True)
        return acc.id


def test_first_start_creates_private_dir_and_key(settings: Settings) -> None:
    ctx = open_context(settings)
    ctx.close()
    assert _mode(settings.home) == 0o700
    assert _mode(settings.home / "master.key") == 0o600
    assert len((settings.home / "master.key").read_bytes()) == 32
    assert _mode(settings.db_path) & 0o077 == 0


@pytest.mark.parametrize("target,mode", [("home", 0o750), ("home", 0o705), ("key", 0o640), ("key", 0o604)])
def test_refuses_to_start_when_readable_by_others(settings: Settings, target: str, mode: int) -> None:
    open_context(settings).close()
    path = settings.home if target == "home" else settings.home / "master.key"
    os.chmod(path, mode)
    with pytest.raises(UnsafeSetupError, match="group or others") as info:
        open_context(settings)
    assert info.value.exit_code == 2


def test_cli_exits_2_with_clear_message_on_exposed_key(keyturn_cli, keyturn_env) -> None:
    keyturn_cli("key", "rotate", check=True)
    os.chmod(Path(keyturn_env["KEYTURN_HOME"]) / "master.key", 0o644)
    proc = keyturn_cli("key", "rotate")
    assert proc.returncode == 2
    assert "master key file" in proc.stderr and "chmod 600" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_key_with_secrets_in_database_is_fatal(settings: Settings) -> None:
    ctx = open_context(settings)
    _add_account(ctx)
    ctx.close()
    (settings.home / "master.key").unlink()
    with pytest.raises(UnsafeSetupError, match="missing but the database already holds encrypted secrets"):
        open_context(settings)
    assert not (settings.home / "master.key").exists(), "a new key must not be invented over existing secrets"


def test_wrong_key_is_refused_at_start(settings: Settings) -> None:
    ctx = open_context(settings)
    _add_account(ctx)
    ctx.close()
    (settings.home / "master.key").unlink()
    write_key(settings.home / "master.key", os.urandom(32))
    with pytest.raises(UnsafeSetupError, match="does not match this database"):
        open_context(settings)


def test_key_rotation_reencrypts_everything_and_app_reads_it_back(settings: Settings) -> None:
    ctx = open_context(settings)
    ids = {name: _add_account(ctx, name, f"secret-of-{name}") for name in ("a1", "a2", "a3")}
    with ctx.db.write() as s:  # a second version, so history is rotated too
        acc = s.get(Account, ids["a1"])
        inventory.set_account_secret(ctx.db, s, acc, "newer-secret-of-a1")
    old_key = read_key(settings.home / "master.key")
    with ctx.db.read() as s:
        before = {a.id: (a.secret_enc) for a in s.exec(select(Account)).all()}

    count, retired = rotate_master_key(ctx.db, settings.home)
    ctx.close()

    assert count >= 5  # 3 secrets + 1 history + key check value
    assert read_key(retired) == old_key
    assert read_key(settings.home / "master.key") != old_key
    assert not pending_key_path(settings.home).exists()
    ctx = open_context(settings)  # a new process reads everything with the new key
    try:
        assert inventory.account_secrets(ctx.db, ids["a1"]).secret == "newer-secret-of-a1"
        assert inventory.account_secrets(ctx.db, ids["a2"]).secret == "secret-of-a2"
        assert inventory.secret_history(ctx.db, ids["a1"])[0][2] == "secret-of-a1"
        with ctx.db.read() as s:
            assert all(a.secret_enc != before[a.id] for a in s.exec(select(Account)).all())
    finally:
        ctx.close()


def test_rotation_killed_after_commit_is_finished_on_next_start(settings: Settings, monkeypatch) -> None:
    """A crash between the database commit and the key file swap must not strand the secrets."""
    ctx = open_context(settings)
    acc_id = _add_account(ctx, "db1", "precious")
    import storage.keyrotate as kr

    def crash(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(kr, "retire_key", crash)
    with pytest.raises(SystemExit):
        rotate_master_key(ctx.db, settings.home)
    ctx.close()
    monkeypatch.undo()
    assert pending_key_path(settings.home).exists()

    ctx = open_context(settings)
    try:
        assert inventory.account_secrets(ctx.db, acc_id).secret == "precious"
        assert not pending_key_path(settings.home).exists()
        assert list(settings.home.glob("master.key.old-*"))
    finally:
        ctx.close()


def test_rotation_failing_before_commit_keeps_old_key(settings: Settings, monkeypatch) -> None:
    ctx = open_context(settings)
    acc_id = _add_account(ctx, "db2", "keep-me")
    old_key = read_key(settings.home / "master.key")
    from storage.vault import Vault

    def broken(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Vault, "encrypt", broken)
    with pytest.raises(RuntimeError):
        rotate_master_key(ctx.db, settings.home)
    monkeypatch.undo()
    ctx.close()
    assert read_key(settings.home / "master.key") == old_key
    assert not pending_key_path(settings.home).exists()
    ctx = open_context(settings)
    try:
        assert inventory.account_secrets(ctx.db, acc_id).secret == "keep-me"
    finally:
        ctx.close()


def test_key_rotate_command(keyturn_cli, keyturn_env) -> None:
    proc = keyturn_cli("key", "rotate", check=True)
    assert "re-encrypted" in proc.stdout
    assert list(Path(keyturn_env["KEYTURN_HOME"]).glob("master.key.old-*"))
