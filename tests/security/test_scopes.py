"""Operator scopes: an operator limited to /prod sees and reveals only assets below /prod, listings included."""

from __future__ import annotations

import time

from datetime import timedelta

import pyotp
import pytest

from core.context import Context
from core.errors import InputError, PermissionDenied
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
    # The previous step's code is still accepted now, but not once the next step begins: never make it in the
    # last 2 s of a step (a loaded machine crossed the boundary between making and checking it once).
    left = 30 - time.time() % 30
    if left < 2:
        time.sleep(left + 0.1)
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
    with pytest.raises(LookupError, match="^no asset named 'lab1'$"):  # as for an asset that does not exist
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
    with pytest.raises(LookupError, match="^no asset named 'lab1'$"):  # as for an asset that does not exist
        listings.list_accounts(ctx, asset="lab1")
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
    from storage.tasks import save_task

    # Stored by someone whose scope covers both (carol may not create it: test_task_definitions_...).
    everywhere = save_task(ctx.db, TaskSpec(name="everywhere", usernames=["app"], nodes=["/prod", "/lab"]), create=True)
    create_task(ctx, TaskSpec(name="prod-only", usernames=["app"], nodes=["/prod"]))
    for start in (lambda: run_task(ctx, "everywhere"), lambda: queue_run(ctx, "everywhere")):
        with pytest.raises(PermissionDenied, match=r"^task everywhere: 1 asset of this run lies outside your scope "
                                                   r"\(/prod\); nothing was run") as refused:
            start()
        assert "lab1" not in str(refused.value)  # counted, never named
    assert count_executions(ctx.db) == 0
    spec = get_task(ctx.db, "prod-only")
    targets = [(t.asset_id, t.asset_name) for t in preview(ctx, spec).targets]
    assert targets and {name for _, name in targets} == {"web1"}
    check_run(ctx, spec, targets)  # inside the scope: allowed

    # A failed scheduled run of the task: carol may not retry its lab1 record either.
    from storage import executions as rec

    eid = _failed_run_on_both(ctx, everywhere.id, "everywhere")
    lab_record = next(r.id for r in rec.list_records(ctx.db, execution_id=eid) if r.asset_name == "lab1")
    with pytest.raises(PermissionDenied, match="1 asset of this run lies outside your scope"):
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
        with pytest.raises(InputError, match=rf"^record {by_asset['lab1']}: no such change record$"):  # as if missing
            act()
    assert set_ignored(ctx, [by_asset["web1"]], True) == [by_asset["web1"]]


# -- issue 11, the gaps docs/security.md listed: task definitions, single assets, history rows, audit ------------
def _tasks_around_the_scope(ctx: Context) -> None:
    """Tasks stored by someone unlimited: prod-web (/prod/web), lab-only (/lab), mixed (web1 and lab1 by name),
    everywhere (/prod and /lab)."""
    from storage.tasks import save_task
    from storage.types import TaskSpec

    for spec in (TaskSpec(name="prod-web", usernames=["app"], nodes=["/prod/web"]),
                 TaskSpec(name="lab-only", usernames=["app"], nodes=["/lab"]),
                 TaskSpec(name="mixed", usernames=["app"], assets=["web1", "lab1"]),
                 TaskSpec(name="everywhere", usernames=["app"], nodes=["/prod", "/lab"])):
        save_task(ctx.db, spec, create=True)


def _same_answer(first: BaseException, second: BaseException, a: str, b: str) -> None:
    """Both errors read alike once the names are swapped: nothing tells an existing object from a missing one."""
    assert type(first) is type(second), (first, second)
    assert str(first).replace(a, "X") == str(second).replace(b, "X"), (str(first), str(second))


def _raised(call, *args) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - the test compares whatever comes out
        return exc
    raise AssertionError("no error")


def test_task_definitions_are_limited_to_the_scope(ctx: Context) -> None:
    """Seeing a task takes one of its targets in the scope; changing, copying, (de)activating, deleting or running it
    takes all of them. A task with nothing in the scope answers as a missing task; assets outside are never named."""
    from core import tasks
    from core.engine import run_task
    from core.services import views
    from core.targets import visible_preview
    from storage.types import TaskSpec

    secret = _carol_limited_to_prod(ctx)
    _tasks_around_the_scope(ctx)
    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa.unlock(ctx, code_at(secret, utcnow()))

    assert [t.name for t in tasks.list_tasks(ctx)] == ["everywhere", "mixed", "prod-web"]
    assert [t.name for t in views.task_rows(ctx)] == ["everywhere", "mixed", "prod-web"]
    assert views.task_names(ctx) == ["everywhere", "mixed", "prod-web"]
    assert [n for n, _ in views.asset_choices(ctx)] == ["web1"]  # the task form's asset picker
    assert "lab1" not in repr(tasks.list_tasks(ctx))
    mixed = tasks.get_task(ctx, "mixed")
    assert mixed.assets == ["web1", tasks.HIDDEN_ASSET]
    shown = visible_preview(ctx, mixed)
    assert {e.asset_name for e in shown.excluded} == {"web1"} and shown.outside_scope == 1  # web1: no root account
    assert "1 more asset outside your scope" in shown.summary() and "lab1" not in repr(shown)

    for use in (tasks.get_task, tasks.secrets_set, tasks.delete_task, lambda c, n: tasks.set_active(c, n, False),
                lambda c, n: tasks.copy_task(c, n, "copy"), lambda c, n: tasks.edit_task(c, n, description="x"),
                lambda c, n: run_task(c, n)):
        _same_answer(_raised(use, ctx, "lab-only"), _raised(use, ctx, "nosuch"), "lab-only", "nosuch")

    for use in (tasks.delete_task, lambda c, n: tasks.set_active(c, n, False), lambda c, n: tasks.copy_task(c, n, "c2"),
                lambda c, n: tasks.edit_task(c, n, description="x")):
        refused = _raised(use, ctx, "mixed")
        assert isinstance(refused, PermissionDenied) and "1 asset it names outside your scope" in str(refused)
        assert "lab1" not in str(refused)
        refused = _raised(use, ctx, "everywhere")
        assert isinstance(refused, PermissionDenied) and "node /lab outside your scope (/prod)" in str(refused)

    # What carol types: an asset outside reads as missing; a node outside is refused.
    _same_answer(_raised(lambda: tasks.create_task(ctx, TaskSpec(name="n1", usernames=["app"], assets=["lab1"]))),
                 _raised(lambda: tasks.create_task(ctx, TaskSpec(name="n1", usernames=["app"], assets=["nosuch"]))),
                 "lab1", "nosuch")
    _same_answer(_raised(lambda: tasks.edit_task(ctx, "prod-web", assets=["lab1"])),
                 _raised(lambda: tasks.edit_task(ctx, "prod-web", assets=["nosuch"])), "lab1", "nosuch")
    with pytest.raises(PermissionDenied, match="node /lab outside your scope"):
        tasks.create_task(ctx, TaskSpec(name="n2", usernames=["app"], nodes=["/lab"]))
    with pytest.raises(PermissionDenied, match="node /lab outside your scope"):
        tasks.edit_task(ctx, "prod-web", nodes=["/prod/web", "/lab"])
    assert tasks.edit_task(ctx, "prod-web", description="inside").description == "inside"
    assert tasks.create_task(ctx, TaskSpec(name="web-too", usernames=["app"], assets=["web1"])).assets == ["web1"]
    assert tasks.copy_task(ctx, "prod-web", "prod-web-2").nodes == ["/prod/web"]


def test_the_task_commands_show_a_scoped_operator_only_the_scope(ctx: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    _carol_limited_to_prod(ctx)
    _tasks_around_the_scope(ctx)
    carol = {"KEYTURN_OPERATOR": "carol"}

    listed = keyturn_cli("task", "list", env=carol, check=True).stdout
    assert "prod-web" in listed and "mixed" in listed and "lab-only" not in listed and "lab1" not in listed
    listed = keyturn_cli("task", "list", "--json", env=carol, check=True).stdout
    assert "lab-only" not in listed and "lab1" not in listed
    shown = keyturn_cli("task", "show", "mixed", env=carol, check=True).stdout
    assert "web1" in shown and "lab1" not in shown and "outside your scope" in shown
    preview = keyturn_cli("task", "preview", "mixed", env=carol, check=True).stdout
    assert "web1" in preview and "lab1" not in preview and "1 more asset outside your scope" in preview
    for command in (("task", "show"), ("task", "preview")):
        hidden, missing = keyturn_cli(*command, "lab-only", env=carol), keyturn_cli(*command, "nosuch", env=carol)
        assert hidden.returncode == missing.returncode != 0
        assert hidden.stderr.replace("lab-only", "X") == missing.stderr.replace("nosuch", "X")
    # Unlimited, the same commands show everything.
    assert "lab-only" in keyturn_cli("task", "list", check=True).stdout


def test_the_apps_tasks_screen_shows_only_the_scope(ctx: Context) -> None:
    _carol_limited_to_prod(ctx)
    _tasks_around_the_scope(ctx)
    seen = _screens(ctx, ("t",))
    assert "prod-web" in seen["t"] and "mixed" in seen["t"] and "lab-only" not in seen["t"]


def _screens(ctx: Context, keys: tuple[str, ...], then: tuple[str, ...] = ()) -> dict[str, str]:
    """Text of the app's screen after each mode key (and, after the last, the keys of then)."""
    import asyncio

    from tui.app import KeyturnApp

    ctx.settings.reconcile_on_start = False

    async def run() -> dict[str, str]:
        seen: dict[str, str] = {}
        app = KeyturnApp(ctx)
        async with app.run_test(size=(160, 45)) as pilot:
            for key in (*keys, *then):
                await pilot.press(key)
                for _ in range(20):  # screens load in thread workers: wait for them, not for time
                    await app.workers.wait_for_complete()
                    await pilot.pause()
                seen[key] = app.export_screenshot().replace("&#160;", " ")
        return seen

    return asyncio.run(run())


def test_single_asset_use_cases_answer_outside_the_scope_as_for_a_missing_asset(ctx: Context) -> None:
    """asset show/edit/trust/remove, account add/remove and reveal (by name, account id or record): an asset
    outside the scope gets the very answer a missing one gets."""
    from core.reveal import check_reveal_targets, reveal_account, reveal_record
    from core.services import inventory as svc
    from storage import executions as rec

    secret = _carol_limited_to_prod(ctx)
    ctx.mfa = mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(secret, utcnow()))
    uses = [
        svc.get_asset, svc.asset_to_remove, svc.remove_asset, svc.fetch_offer,
        lambda c, n: svc.edit_asset(c, n, address="10.9.9.9"),
        lambda c, n: svc.add_account(c, n, "u2", secret_type="password", secret="Pw-123456-x"),
        lambda c, n: svc.account_to_remove(c, n, "app"), lambda c, n: svc.remove_account(c, n, "app"),
        lambda c, n: svc.edit_account(c, n, "app", can_change=False),
        lambda c, n: reveal_pairs(c, mfa, [(n, "app")], reason="T-1"),
        lambda c, n: check_reveal_targets(c, pairs=[(n, "app")]),
    ]
    for use in uses:
        _same_answer(_raised(use, ctx, "lab1"), _raised(use, ctx, "nosuch"), "lab1", "nosuch")
    lab_account = next(a for a in list_accounts(ctx.db) if a.asset_name == "lab1")
    _same_answer(_raised(lambda: reveal_account(ctx, mfa, lab_account.id, reason="T-1")),
                 _raised(lambda: reveal_account(ctx, mfa, 99999, reason="T-1")), str(lab_account.id), "99999")
    eid = _failed_run_on_both(ctx)
    lab_record = next(r.id for r in rec.list_records(ctx.db, execution_id=eid) if r.asset_name == "lab1")
    for use in (lambda r: reveal_record(ctx, mfa, r, "new", reason="T-1"), lambda r: check_reveal_targets(ctx, record=r)):
        _same_answer(_raised(use, lab_record), _raised(use, 99999), str(lab_record), "99999")
    assert svc.get_asset(ctx, "web1").name == "web1"  # inside: as before
    assert store_asset_names(ctx) == ["lab1", "web1"]  # nothing outside was changed or removed


def store_asset_names(ctx: Context) -> list[str]:
    return sorted(a.name for a in list_assets(ctx.db))


def test_single_asset_commands_answer_outside_the_scope_as_for_a_missing_asset(ctx: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    _carol_limited_to_prod(ctx)
    carol = {"KEYTURN_OPERATOR": "carol"}
    for command in (("asset", "show", "{}"), ("asset", "show", "{}", "--json"), ("account", "list", "--asset", "{}"),
                    ("reveal", "{}", "app", "--reason", "T-1")):
        hidden = keyturn_cli(*(c.format("lab1") for c in command), env=carol)
        missing = keyturn_cli(*(c.format("nosuch") for c in command), env=carol)
        assert (hidden.returncode, hidden.stdout.replace("lab1", "X"), hidden.stderr.replace("lab1", "X")) == \
            (missing.returncode, missing.stdout.replace("nosuch", "X"), missing.stderr.replace("nosuch", "X")), command
    assert "web1" in keyturn_cli("asset", "show", "web1", env=carol, check=True).stdout
    tree = keyturn_cli("node", "tree", env=carol, check=True).stdout  # node names are no secret, counts are scoped
    assert "lab  0 assets" in tree and "prod  1 asset" in tree


def _run_half_in_scope(ctx: Context) -> int:
    """An execution (by keyturn itself) that changed web1/app and failed on lab1/app, with its log; its id."""
    from storage import executions as rec

    accounts = {a.asset_name: a.id for a in list_accounts(ctx.db)}
    eid = rec.create_execution(ctx.db, task_id=None, task_name="nightly", trigger="schedule", operator="scheduler",
                               snapshot={}, pid=1, hostname="h")
    web, lab = rec.add_claimed_records(ctx.db, eid, [rec.PendingItem(accounts["web1"], "New-1"),
                                                     rec.PendingItem(accounts["lab1"], "New-2")])[0]
    rec.append_log(ctx.db, eid, [f"2026-01-01T00:00:00Z execution {eid} of nightly started (schedule): 2 accounts on 2 assets",
                                 "2026-01-01T00:00:01Z web1: connecting to 10.0.0.1",
                                 "2026-01-01T00:00:01Z lab1: connecting to 10.0.0.2",
                                 "2026-01-01T00:00:02Z lab1: FAILED: connection refused by lab-gateway",
                                 "2026-01-01T00:00:03Z web1: app: success"])
    rec.settle_success(ctx.db, web)
    rec.settle_failed(ctx.db, lab, "connection refused by lab-gateway")
    rec.finish_execution(ctx.db, eid, log=[f"2026-01-01T00:00:04Z execution {eid} finished: partial; 1 succeeded, "
                                           "1 failed, 0 unverified of 2 in 4.0s"])
    return eid


def test_history_rows_count_and_log_only_the_scope(ctx: Context) -> None:
    """A run half inside the scope reads, for carol, as the run of its inside half: its counts and status, and only
    the log lines about web1 (the run's own lines carry whole-run counts and are left out too)."""
    from core import listings

    _carol_limited_to_prod(ctx)
    eid = _run_half_in_scope(ctx)
    whole = listings.list_executions(Context(ctx.settings, ctx.db))[0]
    assert (whole.status, whole.total, whole.succeeded, whole.failed) == ("partial", 2, 1, 1)

    row = listings.list_executions(ctx)[0]
    assert (row.id, row.status, row.total, row.succeeded, row.failed, row.unverified) == (eid, "success", 1, 1, 0, 0)
    info, records = listings.execution_detail(ctx, eid)
    assert (info.status, info.total, info.succeeded, info.failed) == ("success", 1, 1, 0)
    assert [r.asset_name for r in records] == ["web1"]
    assert "lab" not in info.log and "2 accounts" not in info.log and "1 failed" not in info.log
    assert info.log.splitlines()[:2] == ["2026-01-01T00:00:01Z web1: connecting to 10.0.0.1",
                                         "2026-01-01T00:00:03Z web1: app: success"]

    seen = _screens(ctx, ("h",), then=("enter",))
    assert "nightly" in seen["h"] and "partial" not in seen["h"]
    assert "web1: app: success" in seen["enter"] and "lab" not in seen["enter"]


def test_the_audit_trail_shows_a_scoped_operator_only_the_scope(ctx: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    """Their own events and events about assets, accounts, records, executions and tasks in the scope; in the
    command line and the app alike, counts included."""
    from core.audit import list_events, record_event
    from core.services.views import count_events
    from storage import executions as rec

    _carol_limited_to_prod(ctx)
    _tasks_around_the_scope(ctx)
    eid = _failed_run_on_both(ctx)
    by_asset = {r.asset_name: r.id for r in rec.list_records(ctx.db, execution_id=eid)}
    account = {a.asset_name: a.id for a in list_accounts(ctx.db)}
    bob = Context(ctx.settings, ctx.db, operator="bob")
    for where, task in (("web1", "prod-web"), ("lab1", "lab-only")):
        record_event(bob, "asset.edit", "asset", where, {"comment": f"about {where}"})
        record_event(bob, "account.add", "account", f"app@{where}", {})
        record_event(bob, "secret.reveal", "account", account[where], {"asset": where})
        record_event(bob, "record.ignore", "change_record", by_asset[where], {"asset": where})
        record_event(bob, "task.edit", "task", task, {})
    record_event(bob, "operator.add", "operator", "dave", {})
    lab_run = _lab_only_run(ctx)
    record_event(bob, "execution.start", "execution", lab_run, {"task": "lab-only"})
    record_event(bob, "execution.start", "execution", eid, {"task": "nightly"})

    events = list_events(ctx, limit=1000)
    about = [(e.action, e.object_id) for e in events if e.actor == "bob"]
    assert sorted(about) == sorted([("asset.edit", "web1"), ("account.add", "app@web1"),
                                    ("secret.reveal", str(account["web1"])), ("record.ignore", str(by_asset["web1"])),
                                    ("task.edit", "prod-web"), ("execution.start", str(eid))])
    assert any(e.actor == "carol" and e.action == "operator.scope" for e in events)  # their own
    assert "lab" not in repr([e for e in events if e.actor == "bob"])
    assert count_events(ctx) == len(events) < count_events(Context(ctx.settings, ctx.db))

    out = keyturn_cli("audit", "list", "--limit", "500", "--json", env={"KEYTURN_OPERATOR": "carol"}, check=True).stdout
    assert "about web1" in out and "lab" not in out
    assert "about lab1" in keyturn_cli("audit", "list", "--limit", "500", check=True).stdout  # unlimited: all

    seen = _screens(ctx, ("u",))
    assert "web1" in seen["u"] and "lab" not in seen["u"] and f"of {len(events)}," in seen["u"]


def _lab_only_run(ctx: Context) -> int:
    from storage import executions as rec

    lab = next(a.id for a in list_accounts(ctx.db) if a.asset_name == "lab1")
    eid = rec.create_execution(ctx.db, task_id=None, task_name="lab-only", trigger="schedule", operator="scheduler",
                               snapshot={}, pid=1, hostname="h")
    ids, _ = rec.add_claimed_records(ctx.db, eid, [rec.PendingItem(lab, "New-3")])
    rec.settle_failed(ctx.db, ids[0], "refused")
    rec.finish_execution(ctx.db, eid)
    return eid


def test_following_dependencies_and_overview_stay_inside_the_scope(ctx: Context) -> None:
    """`records follow` of a run with nothing in the scope answers as for a missing one and ends on the scope's
    counts; a dependency step running on a host outside the scope keeps a run from starting and cannot be set;
    the Overview counts the tasks the operator sees."""
    import dataclasses

    from core import listings
    from core.engine import run_task
    from core.notify import send_execution_report
    from core.task_options import set_options
    from core.workers import follow
    from storage.drift import DependencyStep, get_task_options, save_task_options
    from storage.tasks import get_task

    secret = _carol_limited_to_prod(ctx)
    _tasks_around_the_scope(ctx)
    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa.unlock(ctx, code_at(secret, utcnow()))
    hidden_run, half_run = _lab_only_run(ctx), _run_half_in_scope(ctx)
    _same_answer(_raised(follow, ctx, hidden_run), _raised(follow, ctx, 99999), str(hidden_run), "99999")
    _same_answer(_raised(send_execution_report, ctx, hidden_run), _raised(send_execution_report, ctx, 99999),
                 str(hidden_run), "99999")  # `mail report`: a run with nothing in the scope is not there either
    done = follow(ctx, half_run, poll=0.01)
    assert (done.total, done.succeeded, done.failed, done.status) == (1, 1, 0, "success")

    prod_web = get_task(ctx.db, "prod-web")
    assert prod_web.id is not None
    steps = [DependencyStep(asset="web1", command="systemctl restart app", run_on="lab1")]
    save_task_options(ctx.db, prod_web.id, dataclasses.replace(get_task_options(ctx.db, prod_web.id),
                                                               dependencies=steps))
    with pytest.raises(PermissionDenied, match="its dependency steps run on 1 asset outside your scope; nothing"):
        run_task(ctx, "prod-web")

    def step_on(host: str):  # type: ignore[no-untyped-def]
        return lambda: set_options(ctx, "prod-web", dependencies=[DependencyStep("web1", "true", host)])

    _same_answer(_raised(step_on("lab1")), _raised(step_on("nosuch")), "lab1", "nosuch")
    assert listings.overview_stats(ctx, utcnow()).tasks == 3


def test_a_scope_is_a_case_exact_subtree(ctx: Context) -> None:
    """/prod and /Prod are two nodes (paths compare exactly): an operator limited to /prod sees nothing filed under
    /Prod. SQLite's LIKE ignores ASCII case, so a subtree found by LIKE alone leaked /Prod/x into /prod's scope."""
    _carol_limited_to_prod(ctx)
    with ctx.db.write() as s:
        upsert_asset(s, "other1", address="10.0.0.3", nodes=["/Prod/x"])
        upsert_asset(s, "upper1", address="10.0.0.4", nodes=["/PROD"])

    assert [a.name for a in filter_in_scope(ctx, list_assets(ctx.db), lambda a: a.id)] == ["web1"]
    assert [a.name for a in list_assets(ctx.db, node="/prod")] == ["web1"]
    assert [a.name for a in list_assets(ctx.db, node="/Prod")] == ["other1"]
