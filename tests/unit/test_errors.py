"""One error tree: everything a user can act on is a KeyturnError; front ends react on types and fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import errors
from core.context import Context
from core.importer import import_inventory
from storage.inventory import get_asset, upsert_account, upsert_asset


def test_every_error_a_user_acts_on_is_in_one_tree() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.KeyturnError), name
    assert issubclass(errors.NotFound, LookupError)  # `except LookupError` in older callers still works
    assert issubclass(errors.AmbiguousAccount, errors.NotFound)


def test_storage_raises_core_s_not_found(ctx: Context) -> None:
    with pytest.raises(errors.NotFound, match="no asset named 'nope'") as err:
        get_asset(ctx.db, "nope")
    assert err.value.exit_code == 1


def test_a_user_with_a_password_and_a_key_is_ambiguous_by_type(ctx: Context) -> None:
    from storage import operators as store

    with ctx.db.write() as s:
        web = upsert_asset(s, "web1", address="10.0.0.1")[0]
        upsert_account(ctx.db, s, web, "app", secret="pw")
        upsert_account(ctx.db, s, web, "app", secret_type="ssh_key", secret="key")
    with pytest.raises(errors.AmbiguousAccount):
        store.account_ref(ctx.db, "web1", "app")


def test_a_bad_inventory_file_names_its_first_bad_line(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text("asset,address,port,username,secret\nweb1,10.0.0.1,22,root,pw\nweb2,10.0.0.2,99999,root,pw\n")
    with pytest.raises(errors.InputError) as err:
        import_inventory(ctx.db, path)
    assert err.value.line == 3
    assert f"{path}:3:" in str(err.value)
