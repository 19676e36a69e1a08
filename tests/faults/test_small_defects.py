"""Defect 7: user names the drivers reject are refused at input; key rotate is refused while a run holds a lock."""

from __future__ import annotations

import pytest

from core.context import Context
from core.errors import InputError
from core.tasks import create_task
from storage.inventory import upsert_account, upsert_asset
from storage.locks import acquire_task_lock, release_task_lock
from storage.types import TaskSpec


def _inventory(ctx: Context) -> None:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "h1", address="127.0.0.1", port=22, platform="linux")
        upsert_account(ctx.db, s, asset, "root", secret="Adm1n-pw-xx", privileged=True)


@pytest.mark.parametrize("name", ["a" * 33, "1user", "a;id", "u1:x"])
def test_task_refuses_user_names_the_drivers_reject(ctx: Context, name: str) -> None:
    _inventory(ctx)
    with pytest.raises(InputError, match="accounts: .* is not a valid user name"):
        create_task(ctx, TaskSpec(name="t", usernames=[name], assets=["h1"]))


def test_key_rotate_is_refused_while_a_run_holds_a_lock(ctx: Context, keyturn_cli) -> None:  # noqa: ANN001
    _inventory(ctx)
    spec = create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["h1"]))
    assert spec.id is not None and acquire_task_lock(ctx.db, spec.id, "elsewhere:1")
    proc = keyturn_cli("key", "rotate")
    assert proc.returncode == 1 and "holds a lock" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    release_task_lock(ctx.db, spec.id, "elsewhere:1")
    assert keyturn_cli("key", "rotate").returncode == 0
