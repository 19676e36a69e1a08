"""Operator scopes: an operator limited to /prod sees and reveals only assets below /prod, listings included."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from core.context import Context
from core.errors import PermissionDenied
from core.mfa import MfaSession, code_at
from core.operators import add_operator, confirm_enrolment, start_enrolment
from core.reveal import reveal_pairs
from core.scopes import filter_in_scope, set_scope
from storage.inventory import list_accounts, list_assets, upsert_account, upsert_asset
from storage.tables import utcnow

pytestmark = pytest.mark.both_backends  # the scope filters are SQL: both databases must answer the same


def _carol_limited_to_prod(ctx: Context) -> str:
    """web1 (/prod/web) and lab1 (/lab), each with account app; carol confirmed, acting, limited to /prod."""
    with ctx.db.write() as s:
        web, _ = upsert_asset(s, "web1", address="10.0.0.1", nodes=["/prod/web"])
        lab, _ = upsert_asset(s, "lab1", address="10.0.0.2", nodes=["/lab"])
        upsert_account(ctx.db, s, web, "app", secret="web-Secret-1")
        upsert_account(ctx.db, s, lab, "app", secret="lab-Secret-1")
    add_operator(ctx, "carol", "carol@example.org")
    ctx.operator = "carol"
    enrolment = start_enrolment(ctx, "carol")
    secret = pyotp.parse_uri(enrolment.uri).secret
    confirm_enrolment(ctx, "carol", code_at(secret, utcnow() - timedelta(seconds=30)))
    # Limiting an operator is operator admin (a step-up in core): carol's session holds an unlock, as the app's
    # would after her code; no code step is spent, so a test may still unlock with the current code.
    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa._until["carol"] = ctx.mfa.now() + timedelta(minutes=5)
    assert set_scope(ctx, "carol", ["/prod"]) == ["/prod"]
    return secret


def _failed_run_on_both(ctx: Context, task_id: int | None = None, task_name: str = "nightly") -> int:
    """An execution (by keyturn itself) with a failed record on web1/app and one on lab1/app; returns its id."""
    from storage import executions as rec

    accounts = {a.asset_name: a.id for a in list_accounts(ctx.db)}
    eid = rec.create_execution(ctx.db, task_id=task_id, task_name=task_name, trigger="schedule", operator="scheduler",
                               snapshot={}, pid=1, hostname="h")
    ids, _ = rec.add_claimed_records(ctx.db, eid, [rec.PendingItem(accounts["web1"], "New-1"),
                                                   rec.PendingItem(accounts["lab1"], "New-2")])
    for rid in ids:
        rec.settle_failed(ctx.db, rid, "connection refused")
    rec.finish_execution(ctx.db, eid)
    return eid


def test_a_scoped_operator_sees_and_reveals_only_inside_the_scope(ctx: Context) -> None:
    secret = _carol_limited_to_prod(ctx)

    assert [a.name for a in filter_in_scope(ctx, list_assets(ctx.db), lambda a: a.id)] == ["web1"]
    assert [a.asset_name for a in filter_in_scope(ctx, list_accounts(ctx.db), lambda a: a.asset_id)] == ["web1"]
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(secret, utcnow()))
    assert [i.secret for i in reveal_pairs(ctx, mfa, [("web1", "app")], reason="T-1")] == ["web-Secret-1"]
    with pytest.raises(PermissionDenied, match="outside your scope"):
        reveal_pairs(ctx, mfa, [("lab1", "app")], reason="T-1")

    set_scope(ctx, "carol", [])
    assert len(filter_in_scope(ctx, list_assets(ctx.db), lambda a: a.id)) == 2


def test_every_listing_of_both_front_ends_is_limited_in_sql(ctx: Context) -> None:
    """Inventory, records, history, execution detail, overview and its attention and drift lists (core.listings,
    which the app's screens and the command line both use) show carol only /prod."""
    from core import listings
    from core.heartbeat import drifted
    from storage import drift
    from storage.tables import HeartbeatResult

    _carol_limited_to_prod(ctx)
    eid = _failed_run_on_both(ctx)
    with ctx.db.write() as s:
        for a in list_accounts(ctx.db):
            s.add(HeartbeatResult(account_id=a.id, asset_name=a.asset_name, username=a.username, status="mismatch",
                                  reason="the host refuses the vault's secret"))
    assert len(drift.latest_heartbeats(ctx.db)) == 2

    assert [a.name for a in listings.list_assets(ctx)] == ["web1"] and listings.count_assets(ctx) == 1
    assert [a.name for a in listings.list_assets(ctx, search="1")] == ["web1"]
    assert [a.asset_name for a in listings.list_accounts(ctx)] == ["web1"]
    assert listings.list_accounts(ctx, asset="lab1") == []
    assert [r.asset_name for r in listings.list_records(ctx)] == ["web1"] and listings.count_records(ctx) == 1
    assert [r.asset_name for r in listings.records_by_id(ctx, execution_id=eid)] == ["web1"]
    assert sum(len(v) for v in listings.retryable_records(ctx).values()) == 1
    assert [e.id for e in listings.list_executions(ctx)] == [eid] and listings.count_executions(ctx) == 1
    _info, records = listings.execution_detail(ctx, eid)
    assert [r.asset_name for r in records] == ["web1"]
    stats = listings.overview_stats(ctx, utcnow())
    assert (stats.assets, stats.accounts, stats.days[-1].failed) == (1, 1, 1)
    assert [r.asset_name for r in listings.attention_accounts(ctx)] == ["web1"]
    assert [h.asset_name for h in drifted(ctx)] == ["web1"]

    set_scope(ctx, "carol", ["/lab"])  # a scope with nothing of the execution's... still its lab1 record
    assert [r.asset_name for r in listings.execution_detail(ctx, eid)[1]] == ["lab1"]
    set_scope(ctx, "carol", [])  # no limit: everything
    assert listings.count_assets(ctx) == 2 and listings.count_records(ctx) == 2
    stats = listings.overview_stats(ctx, utcnow())
    assert (stats.assets, stats.accounts, stats.days[-1].failed) == (2, 2, 2)


def test_a_history_entry_with_nothing_in_scope_is_not_there(ctx: Context) -> None:
    from core import listings
    from storage.inventory import upsert_asset as add

    _carol_limited_to_prod(ctx)
    eid = _failed_run_on_both(ctx)
    with ctx.db.write() as s:
        add(s, "db9", address="10.0.0.9", nodes=["/prod/db"])
    set_scope(ctx, "carol", ["/prod/db"])
    assert listings.list_executions(ctx) == [] and listings.count_executions(ctx) == 0
    with pytest.raises(LookupError, match=f"no execution {eid}"):
        listings.execution_detail(ctx, eid)


def test_a_scoped_operator_cannot_run_a_task_over_assets_outside_the_scope(ctx: Context) -> None:
    """Refused, not trimmed: nothing is pushed and no execution is written; inside the scope the check passes."""
    from core.engine import retry_records, run_task
    from core.runguard import check_run
    from core.targets import preview
    from core.tasks import create_task
    from core.workers import queue_run
    from storage.inventory import get_asset_row
    from storage.queries import count_executions
    from storage.tasks import get_task
    from storage.types import TaskSpec

    secret = _carol_limited_to_prod(ctx)
    with ctx.db.write() as s:
        for name in ("web1", "lab1"):  # the login account each run needs
            upsert_account(ctx.db, s, get_asset_row(s, name), "root", secret="Root-Secret-1", privileged=True)
    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa.unlock(ctx, code_at(secret, utcnow()))  # creating a task needs a fresh code (step-up)
    everywhere = create_task(ctx, TaskSpec(name="everywhere", usernames=["app"], nodes=["/prod", "/lab"]))
    create_task(ctx, TaskSpec(name="prod-only", usernames=["app"], nodes=["/prod"]))
    for start in (lambda: run_task(ctx, "everywhere"), lambda: queue_run(ctx, "everywhere")):
        with pytest.raises(PermissionDenied, match=r"task everywhere: 1 asset of this run lie outside your scope "
                                                   r"\(/prod\): lab1; nothing was run"):
            start()
    assert count_executions(ctx.db) == 0
    spec = get_task(ctx.db, "prod-only")
    targets = [(t.asset_id, t.asset_name) for t in preview(ctx, spec).targets]
    assert targets and {name for _, name in targets} == {"web1"}
    check_run(ctx, spec, targets)  # inside the scope: allowed

    # A failed scheduled run of the task: carol may not retry its lab1 record either.
    from storage import executions as rec

    eid = _failed_run_on_both(ctx, everywhere.id, "everywhere")
    lab_record = next(r.id for r in rec.list_records(ctx.db, execution_id=eid) if r.asset_name == "lab1")
    with pytest.raises(PermissionDenied, match="lab1; nothing was run"):
        retry_records(ctx, [lab_record])
    assert rec.retried_as(ctx.db, lab_record) is None and count_executions(ctx.db) == 1


def test_the_apps_screens_show_a_scoped_operator_only_the_scope(ctx: Context) -> None:
    """Inventory, Records, History and Overview in the app list through the same scoped queries."""
    import asyncio

    from tui.app import KeyturnApp

    _carol_limited_to_prod(ctx)
    _failed_run_on_both(ctx)
    ctx.settings.reconcile_on_start = False

    async def run() -> dict[str, str]:
        seen: dict[str, str] = {}
        app = KeyturnApp(ctx)
        async with app.run_test(size=(120, 40)) as pilot:
            for key, mode in (("i", "inventory"), ("s", "records"), ("h", "history"), ("o", "overview")):
                await pilot.press(key)
                for _ in range(20):  # screens load in thread workers: wait for them, not for time
                    await app.workers.wait_for_complete()
                    await pilot.pause()
                seen[mode] = app.export_screenshot().replace("&#160;", " ")
        return seen

    seen = asyncio.run(run())
    for mode in ("inventory", "records", "overview"):
        assert "web1" in seen[mode] and "lab1" not in seen[mode], mode
    assert "nightly" in seen["history"]


def test_record_actions_stay_inside_the_scope(ctx: Context) -> None:
    """Ignore, verify and restore act on no record of an asset outside the scope; the attention list hides it."""
    from core.record_actions import needs_attention, restore_record, set_ignored, verify_record
    from storage import executions as rec

    secret = _carol_limited_to_prod(ctx)
    eid = _failed_run_on_both(ctx)
    by_asset = {r.asset_name: r.id for r in rec.list_records(ctx.db, execution_id=eid)}
    assert [r.asset_name for r in needs_attention(ctx)] == ["web1"]
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(secret, utcnow()))
    for act in (lambda: set_ignored(ctx, [by_asset["web1"], by_asset["lab1"]], True),
                lambda: verify_record(ctx, by_asset["lab1"]), lambda: restore_record(ctx, mfa, by_asset["lab1"])):
        with pytest.raises(PermissionDenied, match=rf"records: outside your scope: lab1 \(record {by_asset['lab1']}\)"):
            act()
    assert set_ignored(ctx, [by_asset["web1"]], True) == [by_asset["web1"]]
