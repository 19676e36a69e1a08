"""Removing an account that has a secret history: the account and every history row go in one transaction,
with no ORM warning about rows the database's ON DELETE CASCADE had already removed."""

from __future__ import annotations

import warnings

from sqlalchemy import func
from sqlmodel import select

from core.context import Context
from core.services import inventory
from storage.tables import AccountSecretHistory


def test_removing_an_account_with_history_deletes_it_cleanly(ctx: Context) -> None:
    inventory.add_asset(ctx, "web1", address="10.0.0.1")
    for n in (1, 2, 3):  # two older secrets go to history
        inventory.add_account(ctx, "web1", "app", secret_type="password", secret=f"Pw-{n}-history")
    with ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(AccountSecretHistory)).one() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SQLAlchemy's "expected to delete 2 row(s); 0 were matched"
        inventory.remove_account(ctx, "web1", "app")
    assert inventory.list_accounts(ctx) == []
    with ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(AccountSecretHistory)).one() == 0
