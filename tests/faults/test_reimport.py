"""Defect 4: re-importing an inventory after a rotation must not put the stale secrets back as current."""

from __future__ import annotations

from pathlib import Path

from core.context import Context
from storage import executions as rec
from tests.integration.test_rotation import vault

INI = "[web]\nw1 ansible_host=10.0.0.5 ansible_user=root ansible_password=Old-root-pw-1\n"


def _rotate(ctx: Context, new: str) -> None:
    """What a successful keyturn rotation writes: a record settled success (the vault takes the new secret)."""
    with ctx.db.read() as s:
        from storage.inventory import get_account_row

        acc_id = get_account_row(s, "w1", "root").id
    ex = rec.create_execution(ctx.db, task_id=None, task_name="rot", trigger="cli", operator="t", snapshot={},
                              pid=1, hostname="h")
    [rid] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(acc_id, new)])
    rec.mark_pushing(ctx.db, rid)
    assert rec.settle_success(ctx.db, rid)


def test_reimport_after_rotation_is_a_conflict_and_changes_nothing(ctx: Context, tmp_path: Path, keyturn_cli) -> None:  # noqa: ANN001
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    assert keyturn_cli("import", str(inv)).returncode == 0
    _rotate(ctx, "Rotated-pw-22")
    again = keyturn_cli("import", str(inv))
    assert again.returncode == 2, again.stdout + again.stderr
    assert "w1/root: keyturn rotated this secret" in again.stderr and "--overwrite-rotated" in again.stderr
    assert "Traceback" not in again.stderr
    assert vault(ctx, "w1", "root").secret == "Rotated-pw-22"
    forced = keyturn_cli("import", str(inv), "--overwrite-rotated")
    assert forced.returncode == 0, forced.stderr
    assert vault(ctx, "w1", "root").secret == "Old-root-pw-1"
    from storage.inventory import get_account_row, secret_history

    with ctx.db.read() as s:
        acc_id = get_account_row(s, "w1", "root").id
    assert "Rotated-pw-22" in [secret for _v, _t, secret in secret_history(ctx.db, acc_id)]


def test_reimport_of_the_same_secret_is_no_conflict(ctx: Context, tmp_path: Path, keyturn_cli) -> None:  # noqa: ANN001
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    assert keyturn_cli("import", str(inv)).returncode == 0
    _rotate(ctx, "Rotated-pw-22")
    inv.write_text(INI.replace("Old-root-pw-1", "Rotated-pw-22"))
    assert keyturn_cli("import", str(inv)).returncode == 0
