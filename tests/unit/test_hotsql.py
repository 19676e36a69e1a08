"""HotStatement (storage/hotsql.py) writes and reads exactly what SQLAlchemy's own execution does, on SQLite and
PostgreSQL: the rows a rotation's step writer leaves must be the rows every other reader expects."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select, update

from core.context import Context
from storage.executions import _table
from storage.hotsql import HotStatement
from storage.inventory import upsert_account, upsert_asset
from storage.tables import Account, AccountSecretHistory

pytestmark = pytest.mark.both_backends


def _account(ctx: Context) -> int:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="127.0.0.1", port=22, platform="linux")
        acc, _ = upsert_account(ctx.db, s, asset, "app", secret="first-secret")
        return acc.id  # type: ignore[return-value]


def test_hot_writes_are_read_back_the_same_by_sqlalchemy_and_by_hot_reads(ctx: Context) -> None:
    acc_id = _account(ctx)
    account, history = _table(Account), _table(AccountSecretHistory)
    when = datetime(2026, 12, 7, 1, 2, 3, tzinfo=timezone.utc)  # microsecond 0: isoformat would drop it
    later = when + timedelta(microseconds=123456)
    b = bindparam
    set_account = HotStatement(update(account).where(account.c.id == b("b_id")).values(
        last_changed_at=b("b_when"), last_status=b("b_status"), passphrase_enc=None))
    add_history = HotStatement(insert(history).values(
        account_id=b("h_acc"), version=b("h_ver"), valid_from=b("h_from"), replaced_at=b("h_to"),
        secret_enc=b("h_blob")).returning(history.c.id))
    read_account = HotStatement(select(account.c.id, account.c.last_changed_at, account.c.last_status,
                                       account.c.passphrase_enc).where(account.c.id == b("b_id")))
    with ctx.db.write_conn() as conn:
        assert set_account.execute(conn, {"b_id": acc_id, "b_when": when, "b_status": "success"}).rowcount == 1
        hid = add_history.execute(conn, {"h_acc": acc_id, "h_ver": 7, "h_from": when, "h_to": later,
                                         "h_blob": b"\x00\x01binary"}).scalar()
        assert isinstance(hid, int)
        hot_row = read_account.execute(conn, {"b_id": acc_id}).first()
    with ctx.db.write_conn() as conn:  # SQLAlchemy's own reading of what the hot statements wrote
        sa_row = conn.execute(select(account.c.id, account.c.last_changed_at, account.c.last_status,
                                     account.c.passphrase_enc).where(account.c.id == acc_id)).mappings().one()
        sa_hist = conn.execute(select(history).where(history.c.id == hid)).mappings().one()
    assert dict(sa_row) == hot_row == {"id": acc_id, "last_changed_at": when, "last_status": "success",
                                       "passphrase_enc": None}
    assert (sa_hist["valid_from"], sa_hist["replaced_at"], sa_hist["version"]) == (when, later, 7)
    assert bytes(sa_hist["secret_enc"]) == b"\x00\x01binary"


def test_a_hot_statement_writes_in_the_transaction_it_is_given(ctx: Context) -> None:
    """Rolled back with its transaction: nothing half-written because a hot statement ran outside it."""
    acc_id = _account(ctx)
    account = _table(Account)
    mark = HotStatement(update(account).where(account.c.id == bindparam("b_id")).values(last_status="touched"))
    with pytest.raises(RuntimeError), ctx.db.write_conn() as conn:
        assert mark.execute(conn, {"b_id": acc_id}).rowcount == 1
        raise RuntimeError("fail after the statement")
    with ctx.db.write_conn() as conn:
        assert conn.execute(select(account.c.last_status).where(account.c.id == acc_id)).scalar() != "touched"
