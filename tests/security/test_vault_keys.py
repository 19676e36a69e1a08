"""Findings 8 and 5: vault values are bound to what they belong to, and carry the id of their key.

8: the associated data bound only (table, row, field): an older ciphertext of the same account, or a row
moved to another asset, still decrypted. Now asset, user, secret type and version are bound, and
migration 0004 re-seals existing values.
5: rotating the master key while another process (a scheduler) runs lost that process's later writes, which
it sealed under the key it still held. Now each value names its key, and every write transaction follows a
rotation before sealing; tested with a live `keyturn scheduler` process against a real host.
"""

from __future__ import annotations

import os
import selectors
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import select

from core.config import Settings
from core.context import Context, open_context
from core.tasks import create_task
from storage.db import Database
from storage.inventory import account_secrets, get_account_row, set_account_secret, upsert_account, upsert_asset
from storage.keyrotate import rotate_master_key
from storage.tables import Account, ChangeSecretTask, Execution, utcnow
from storage.types import TaskSpec
from storage.vault import FORMAT_V1, FORMAT_V2, VaultError
from tests.conftest import ROOT
from tests.sandbox import SandboxHost


def _account(ctx: Context, asset: str = "web1", user: str = "root") -> Account:
    with ctx.db.read() as s:
        return get_account_row(s, asset, user)


def _raw(ctx: Context) -> sqlite3.Connection:
    return sqlite3.connect(ctx.settings.db_path, isolation_level=None)


def test_an_older_ciphertext_of_the_same_account_no_longer_opens(ctx: Context) -> None:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1")
        upsert_account(ctx.db, s, asset, "root", secret="first-Secret-1")
    old_blob = _account(ctx).secret_enc
    with ctx.db.write() as s:
        acc = s.get(Account, _account(ctx).id)
        set_account_secret(ctx.db, s, acc, "second-Secret-2")
    acc = _account(ctx)
    assert account_secrets(ctx.db, acc.id).secret == "second-Secret-2"
    with _raw(ctx) as conn:  # someone with the database puts the old password back as current
        conn.execute("UPDATE account SET secret_enc = ? WHERE id = ?", (old_blob, acc.id))
    with pytest.raises(VaultError, match="does not verify"):
        account_secrets(ctx.db, acc.id)


def test_an_account_moved_to_another_asset_no_longer_opens(ctx: Context) -> None:
    with ctx.db.write() as s:
        web1, _ = upsert_asset(s, "web1", address="10.0.0.1")
        mine, _ = upsert_asset(s, "mine", address="10.6.6.6")
        upsert_account(ctx.db, s, web1, "root", secret="root-Secret-1")
        mine_id = mine.id
    acc = _account(ctx)
    with _raw(ctx) as conn:
        conn.execute("UPDATE account SET asset_id = ? WHERE id = ?", (mine_id, acc.id))
    with pytest.raises(VaultError, match="does not verify"):
        account_secrets(ctx.db, acc.id)


def test_values_carry_their_key_id_and_a_rotation_keeps_them_readable(ctx: Context) -> None:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1")
        upsert_account(ctx.db, s, asset, "root", secret="root-Secret-1")
    before = _account(ctx).secret_enc
    assert before is not None and before[:1] == FORMAT_V2
    rotate_master_key(ctx.db, ctx.home)
    after = _account(ctx).secret_enc
    assert after is not None and after[1:9] != before[1:9]
    assert account_secrets(ctx.db, _account(ctx).id).secret == "root-Secret-1"


def _v1(key: bytes, plain: str, table: str, row_id: int, field: str) -> bytes:
    """A value as the previous release sealed it (format 1: table, row and field only)."""
    nonce = os.urandom(12)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plain.encode(), f"keyturn:v1:{table}:{row_id}:{field}".encode())


def test_migration_0004_reseals_values_of_the_previous_format(settings: Settings) -> None:
    """A database at 0001 with format 1 values opens at 0004 with every value re-sealed and readable."""
    from alembic import command
    from alembic.config import Config

    from storage.db import MIGRATIONS

    settings.home.mkdir(mode=0o700, parents=True)
    key = os.urandom(32)
    (settings.home / "master.key").write_bytes(key)
    os.chmod(settings.home / "master.key", 0o600)
    db = Database(settings.effective_database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.effective_database_url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO asset (id, name, address, port, platform, active, comment, created_at, "
                             "updated_at) VALUES (1, 'web1', '10.0.0.1', 22, 'linux', 1, '', '2025-01-01', '2025-01-01')")
        conn.exec_driver_sql(
            "INSERT INTO account (id, asset_id, username, secret_type, secret_enc, privileged, can_change, version, "
            "last_status, created_at) VALUES (1, 1, 'root', 'password', ?, 1, 1, 3, '', '2025-01-01')",
            (_v1(key, "old-format-Secret", "account", 1, "secret_enc"),))
        conn.exec_driver_sql("INSERT INTO vault_item (name, value_enc, updated_at) VALUES ('vault.key-check', ?, "
                             "'2025-01-01')", (_v1(key, "keyturn master key check", "vault_item", "vault.key-check", "value_enc"),))
    db.close()
    v1_blob = _v1(key, "old-format-Secret", "account", 1, "secret_enc")

    ctx = open_context(settings, operator="tester")
    try:
        assert ctx.db.current_revision() == "0004"
        acc = _account(ctx)
        assert acc.secret_enc is not None and acc.secret_enc[:1] == FORMAT_V2
        assert account_secrets(ctx.db, acc.id).secret == "old-format-Secret"
        with _raw(ctx) as conn:  # a format 1 value put back after the migration is refused
            conn.execute("UPDATE account SET secret_enc = ? WHERE id = 1", (v1_blob,))
        with pytest.raises(VaultError, match="not a keyturn vault value"):
            account_secrets(ctx.db, 1)
    finally:
        ctx.close()


@pytest.mark.sshd
def test_rotating_the_master_key_under_a_live_scheduler_loses_nothing(ctx: Context, sandbox_fleet,  # noqa: ANN001
                                                                      keyturn_env: dict[str, str]) -> None:
    from tests.integration.test_scheduler_runs import enroll

    host: SandboxHost = sandbox_fleet(1, users=["alice"]).hosts[0]
    enroll(ctx, host, ["alice"])
    create_task(ctx, TaskSpec(name="nightly", usernames=["alice"], assets=[host.name], interval_hours=24,
                              start_at=utcnow() + timedelta(days=1)))
    proc = subprocess.Popen([sys.executable, "-m", "tui", "scheduler", "--poll", "0.5"], cwd=ROOT, text=True,
                            env=keyturn_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        # Wait for the scheduler to have opened the vault (it logs once it polls).
        sel = selectors.DefaultSelector()
        sel.register(proc.stderr, selectors.EVENT_READ)
        seen = ""
        deadline = time.monotonic() + 60
        while "scheduler started" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                seen += proc.stderr.readline()
        assert "scheduler started" in seen, seen

        count, _retired = rotate_master_key(ctx.db, ctx.home)  # the scheduler still holds the old key
        assert count > 0
        with ctx.db.write() as s:  # the task is due now: the scheduler rotates alice and seals her password
            task = s.exec(select(ChangeSecretTask).where(ChangeSecretTask.name == "nightly")).one()
            task.next_run_at = utcnow() - timedelta(minutes=1)
            s.add(task)
        deadline = time.monotonic() + 120
        done: list[Execution] = []
        while time.monotonic() < deadline and proc.poll() is None:
            with ctx.db.read() as s:
                done = list(s.exec(select(Execution).where(Execution.task_name == "nightly",
                                                          Execution.status != "running")).all())
            if done:
                break
            time.sleep(0.2)
        assert done and done[0].status == "success", (done, proc.poll())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    fresh = open_context(ctx.settings, operator="tester")  # a new process, with only the new master.key current
    try:
        with fresh.db.read() as s:
            acc = get_account_row(s, host.name, "alice")
        secret = account_secrets(fresh.db, acc.id).secret
        assert secret is not None and secret != host.passwords["alice"]
        assert host.password_works("alice", secret)  # the host holds exactly what the vault can still open
        assert acc.secret_enc is not None and acc.secret_enc[1:9] == _key_id(fresh)
    finally:
        fresh.close()


def _key_id(ctx: Context) -> bytes:
    return ctx.db.vault.key_id
