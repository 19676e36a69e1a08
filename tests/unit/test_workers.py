"""Work units of runs queued for workers: claims, leases, takeover fencing, cancel, and reconcile's view.

No host is contacted here (a cancelled unit never connects); the rotation itself is tested against real
sandbox hosts in tests/integration/test_workers.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.context import Context
from core.tasks import create_task
from core.workers import Worker, follow, queue_run
from storage import executions as rec
from storage import workunits as units
from storage.inventory import upsert_account, upsert_asset
from storage.locks import lock_holder
from storage.types import TaskSpec

pytestmark = pytest.mark.both_backends


@pytest.fixture
def queued(ctx: Context, backend: str) -> int:
    """A run of task "web" (3 assets x 2 accounts, hosts that are never contacted) queued for workers."""
    with ctx.db.write() as s:
        for i in range(3):
            asset, _ = upsert_asset(s, f"web{i}", address="127.0.0.1", port=1)
            upsert_account(ctx.db, s, asset, "root", secret="root-pw", privileged=True)
            for user in ("alice", "bob"):
                upsert_account(ctx.db, s, asset, user, secret=f"{user}-pw")
    create_task(ctx, TaskSpec(name="web", usernames=["alice", "bob"], assets=["web0", "web1", "web2"]))
    return queue_run(ctx, "web")


def test_queueing_commits_every_record_and_hands_the_task_lock_to_the_workers(ctx: Context, queued: int) -> None:
    records = rec.list_records(ctx.db, execution_id=queued)
    assert sorted(r.status for r in records) == ["pending"] * 6
    assert units.progress(ctx.db, queued).units == {"queued": 3}
    task_id = records[0].task_id
    assert lock_holder(ctx.db, task_id) == units.worker_lock_holder(queued)
    with pytest.raises(Exception, match="already running"):
        queue_run(ctx, "web")


def test_each_unit_goes_to_one_worker_and_an_expired_lease_is_taken_over_with_fencing(ctx: Context,
                                                                                      queued: int) -> None:
    lease = timedelta(seconds=60)
    a, b, c = (units.claim_unit(ctx.db, w, lease) for w in ("a", "b", "c"))
    assert a and b and c and len({a.id, b.id, c.id}) == 3
    assert units.claim_unit(ctx.db, "d", lease) is None
    # a's lease runs out (its worker died): the next taker gets the unit with the next attempt.
    later = rec.utcnow() + timedelta(seconds=61)
    d = units.claim_unit(ctx.db, "d", lease, now=later)
    assert d is not None and d.taken_over and d.attempt == 2
    assert d.id in (a.id, b.id, c.id)
    lost = {u.id: u for u in (a, b, c)}[d.id]
    holder = {a.id: "a", b.id: "b", c.id: "c"}[d.id]
    assert not units.renew_lease(ctx.db, lost, holder, lease)
    assert not units.finish_unit(ctx.db, lost, holder)
    assert units.renew_lease(ctx.db, d, "d", lease) and units.finish_unit(ctx.db, d, "d")
    assert not units.claim_finish(ctx.db, queued)  # two units are not done


def test_a_queued_run_is_alive_for_reconcile_until_its_last_unit_is_done(ctx: Context, queued: int) -> None:
    from core.reconcile import reconcile

    summary = reconcile(ctx)
    assert summary.skipped_live == 6 and summary.interrupted == []
    assert rec.get_execution(ctx.db, queued).status == "running"


def test_a_cancelled_queued_run_pushes_nothing_and_ends_cancelled(ctx: Context, queued: int) -> None:
    units.request_cancel(ctx.db, queued)
    assert Worker(ctx, worker_id="w", concurrency=2, poll_seconds=0.05).serve(once=True) == 3
    info = follow(ctx, queued, poll=0.05)
    assert (info.status, info.failed, info.total) == ("cancelled", 6, 6)
    assert {r.error for r in rec.list_records(ctx.db, execution_id=queued)} == {"cancelled before push"}
    assert lock_holder(ctx.db, rec.list_records(ctx.db, execution_id=queued)[0].task_id) is None
    assert units.progress(ctx.db, queued).units == {"done": 3}


def test_a_run_whose_units_all_ended_stays_the_workers_while_one_of_them_finishes_it(ctx: Context,
                                                                                      queued: int) -> None:
    lease = timedelta(seconds=60)
    for worker in ("a", "b", "c"):
        unit = units.claim_unit(ctx.db, worker, lease)
        assert unit is not None and units.finish_unit(ctx.db, unit, worker)
    # Every unit is done, the execution not finished yet (its finisher is at work, or died right there).
    assert units.worker_run_alive(ctx.db, queued)
    assert not units.worker_run_alive(ctx.db, queued, grace=timedelta(0))
    assert units.claim_finish(ctx.db, queued) and not units.claim_finish(ctx.db, queued)
