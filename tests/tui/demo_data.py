"""Fixed demo data for snapshot tests and README screenshots: same rows, same dates, every time.

Nothing here depends on the wall clock: every timestamp is derived from NOW, and the app under test is given
a clock that returns NOW.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from core import tasks
from core.context import Context
from storage.inventory import upsert_account, upsert_asset
from sqlmodel import select

from storage.tables import Account, Asset, ChangeRecord, Execution, Operator
from storage.types import HostParams, PasswordRules, TaskSpec

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=timezone.utc)

ASSETS = [
    ("web-01", "10.0.1.11", "/prod/web"), ("web-02", "10.0.1.12", "/prod/web"), ("web-03", "10.0.1.13", "/prod/web"),
    ("db-01", "10.0.2.21", "/prod/db"), ("db-02", "10.0.2.22", "/prod/db"), ("stage-01", "10.9.0.5", "/staging"),
]
ERRORS = {
    "failed": ["sudo: a password is required", "chpasswd: user 'deploy' does not exist",
               "new password rejected by PAM: it is too similar to the old one"],
    "unverified": ["connection timed out after the push; old and new password both unconfirmed"],
}


def clock() -> datetime:
    """The frozen clock the demo app runs with."""
    return NOW


def build_demo(ctx: Context) -> None:
    """Fill an empty database with a small fleet, four tasks and 30 days of executions."""
    db = ctx.db
    with db.write() as s:
        for name, address, node in ASSETS:
            asset, _ = upsert_asset(s, name, address=address, nodes=[node])
            upsert_account(db, s, asset, "root", secret="demo-root-pw", privileged=True)
            for user in ("app", "deploy"):
                upsert_account(db, s, asset, user, secret=f"demo-{user}-pw")
        upsert_asset(s, "legacy-aix", address="10.7.0.2", platform="aix", nodes=["/prod/legacy"], active=False)
    specs = [
        TaskSpec(name="web-passwords", usernames=["app", "deploy"], nodes=["/prod/web"], interval_hours=24,
                 recipients=["alice"], description="daily app and deploy passwords on the web tier"),
        TaskSpec(name="db-keys", usernames=["app"], assets=["db-01", "db-02"], secret_type="ssh_key",
                 cron="0 3 * * 1"),
        TaskSpec(name="staging-deploy", usernames=["deploy"], nodes=["/staging"], active=False,
                 rules=PasswordRules(length=32, symbols=False)),
        TaskSpec(name="break-glass", usernames=["deploy"], assets=["db-01"], secret_strategy="specific",
                 specific_secret="Break-Glass-2025!", params=HostParams(create_user=True)),
    ]
    ids = {spec.name: tasks.create_task(ctx, spec).id for spec in specs}
    with db.write() as s:
        # Added after the tasks: once confirmed operators exist, creating a task needs a fresh TOTP code.
        s.add(Operator(name="alice", email="alice@example.com", confirmed=True))
        s.add(Operator(name="bob", email="bob@example.com", confirmed=True))
    with db.write() as s:
        # Real writes stamped the wall clock; the demo must look the same every day.
        for i, acc in enumerate(s.exec(select(Account)).all()):
            acc.last_changed_at = NOW - timedelta(days=3 + i % 5, hours=i)
            acc.created_at = NOW - timedelta(days=90)
            acc.last_status = "success"
    with db.read() as s:
        account_ids = {(a, u): i for i, a, u in s.exec(
            select(Account.id, Asset.name, Account.username).join(Asset, Asset.id == Account.asset_id)).all()}
    rnd = random.Random(7)
    plan = [("web-passwords", ["web-01", "web-02", "web-03"], ["app", "deploy"]),
            ("db-keys", ["db-01", "db-02"], ["app"]),
            ("break-glass", ["db-01"], ["deploy"])]
    with db.write() as s:
        for day in range(29, -1, -1):
            for task_name, assets, users in plan:
                if task_name != "web-passwords" and day % 7:
                    continue
                started = NOW - timedelta(days=day, hours=9 - len(task_name) % 5)
                ex = Execution(task_id=ids[task_name], task_name=task_name, trigger="schedule" if day else "manual",
                               status="running", operator="alice", started_at=started)
                s.add(ex)
                s.flush()
                counts = {"success": 0, "failed": 0, "unverified": 0}
                lines = [f"execution {ex.id} of {task_name} started: {len(assets) * len(users)} accounts"]
                for asset in assets:
                    for user in users:
                        roll = rnd.random()
                        status = "failed" if roll < 0.08 else "unverified" if roll < 0.12 else "success"
                        error = rnd.choice(ERRORS[status]) if status != "success" else ""
                        counts[status] += 1
                        rec = ChangeRecord(execution_id=ex.id, task_id=ids[task_name], task_name=task_name,
                                           account_id=account_ids[(asset, user)],
                                           asset_name=asset, username=user, status=status, error=error,
                                           created_at=started, started_at=started,
                                           finished_at=started + timedelta(seconds=3))
                        s.add(rec)
                        s.flush()
                        db.seal(rec, "old_secret_enc", f"old-{asset}-{user}")
                        db.seal(rec, "new_secret_enc", f"new-{asset}-{user}-{day}")
                        lines.append(f"{asset}: {user}: {status}" + (f": {error}" if error else ""))
                ex.total = sum(counts.values())
                ex.succeeded, ex.failed, ex.unverified = counts["success"], counts["failed"], counts["unverified"]
                ex.status = "success" if ex.total == ex.succeeded else "partial" if ex.succeeded else "failed"
                ex.finished_at = started + timedelta(seconds=4 + ex.total)
                lines.append(f"execution {ex.id} finished: {ex.status}")
                ex.log = "\n".join(lines)
                if day == 0 and task_name == "web-passwords":
                    ex.mail_error = "smtp: connection refused by mail.example.com:25"
