"""Defect 3: an impossible cron line is refused at save, and a stored one never stalls the other tasks."""

from __future__ import annotations

from sqlalchemy import text

from core.context import Context
from core.tasks import create_task
from storage import executions as rec
from storage.inventory import upsert_account, upsert_asset
from storage.types import TaskSpec


def _inventory(ctx: Context) -> None:
    # An address nothing listens on: the run happens (and fails per account), no sshd needed to prove it ran.
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "gone", address="127.0.0.1", port=9, platform="linux")
        upsert_account(ctx.db, s, asset, "root", secret="Adm1n-pw-xx", privileged=True)
        upsert_account(ctx.db, s, asset, "alice", secret="Al1ce-pw-xx")


def test_feb_30_is_refused_at_save_by_the_command_line(ctx: Context, keyturn_cli) -> None:  # noqa: ANN001
    _inventory(ctx)
    proc = keyturn_cli("task", "create", "never", "--accounts", "alice", "--asset", "gone", "--cron", "0 0 30 2 *")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cron" in proc.stderr and "never fires" in proc.stderr and "Traceback" not in proc.stderr
    assert keyturn_cli("task", "show", "never").returncode != 0  # nothing was saved


def test_a_stored_impossible_schedule_is_skipped_and_reported_and_others_still_run(ctx: Context, keyturn_cli) -> None:  # noqa: ANN001
    _inventory(ctx)
    create_task(ctx, TaskSpec(name="good", usernames=["alice"], assets=["gone"], interval_hours=24))
    create_task(ctx, TaskSpec(name="bad", usernames=["alice"], assets=["gone"], interval_hours=24))
    # A database written before the check existed (or edited by hand) holds the impossible line.
    with ctx.db.write() as s:
        s.connection().execute(text("UPDATE change_secret_task SET cron = '0 0 30 2 *', interval_hours = NULL, "
                                    "next_run_at = NULL WHERE name = 'bad'"))
        # The good task is due now.
        s.connection().execute(text("UPDATE change_secret_task SET next_run_at = '2000-01-01 00:00:00.000000' "
                                    "WHERE name = 'good'"))
    show = keyturn_cli("task", "show", "bad")
    assert show.returncode == 0 and "Traceback" not in show.stderr, show.stdout + show.stderr
    once = keyturn_cli("scheduler", "--once")
    assert "Traceback" not in once.stderr, once.stderr
    assert "bad" in once.stderr and "never fires" in once.stderr  # reported
    assert once.returncode == 1  # something went wrong, and the exit code says so
    ran = {e.task_name for e in [rec.get_execution(ctx.db, r.execution_id) for r in rec.list_records(ctx.db)]}
    assert ran == {"good"}  # the good task ran; the bad one started nothing
