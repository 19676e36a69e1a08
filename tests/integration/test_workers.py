"""`keyturn worker` processes sharing a run through the database, on real sandbox sshd hosts (issue 15).

Each worker is a real `keyturn worker` process on its own "machine" (a data directory holding only a copy of
the master key); the run is queued and followed by a real `keyturn task run --workers`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.context import Context
from core.tasks import create_task
from storage.keyfile import key_path
from storage.types import TaskSpec
from tests.conftest import ROOT
from tests.integration.test_scheduler_runs import enroll, executions, vault_password
from tests.integration.test_shared_database import machine

pytestmark = [pytest.mark.sshd]


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[str]:
    """Start `keyturn ARGS` with its output going to a file (read after it ended)."""
    return subprocess.Popen([sys.executable, "-m", "tui", *args], cwd=ROOT, env=env, text=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def push_windows(path: Path) -> dict[int, list[tuple[str, float, float]]]:
    """Per account id: (worker, start, end) of every change a worker made; end is infinity if it never ended."""
    open_: dict[tuple[str, int], list[float]] = defaultdict(list)
    windows: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        edge, worker, account, at = line.split()
        key = (worker, int(account))
        if edge == "start":
            open_[key].append(float(at))
        else:
            windows[int(account)].append((worker, open_[key].pop(0), float(at)))
    for (worker, account), starts in open_.items():
        windows[account] += [(worker, s, float("inf")) for s in starts]
    return windows


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_three_workers_one_killed_mid_run_every_account_ends_on_the_vaults_secret(
        ctx: Context, sandbox_fleet, keyturn_env, tmp_path: Path) -> None:  # noqa: ANN001
    users = [f"u{i}" for i in range(5)]
    fleet = sandbox_fleet(12, users=users)
    for host in fleet.hosts:
        enroll(ctx, host, users)
    create_task(ctx, TaskSpec(name="fleet", usernames=users, assets=[h.name for h in fleet.hosts]))
    windows_file, flag = tmp_path / "push-windows", tmp_path / "paused"
    common = {"KEYTURN_TEST_PUSH_LOG": str(windows_file), "KEYTURN_COMMAND_TIMEOUT": "20"}
    # The victim changes one account, then sleeps with it `pushing` (pushed, not yet settled) until killed.
    victim_env = machine(keyturn_env, tmp_path, ctx, "w-victim", **common,
                         KEYTURN_TEST_PAUSE_AFTER=f"pushed:{flag}")
    victim = start(victim_env, "worker", "--id", "victim", "--concurrency", "1", "--lease", "3", "--poll", "0.2",
                   log=tmp_path / "victim.log")
    # The victim takes the first unit alone, so the kill is sure to leave one of its records open.
    run = start(machine(keyturn_env, tmp_path, ctx, "jump", **common), "task", "run", "fleet", "--workers",
                log=tmp_path / "run.log")
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()
        assert time.monotonic() < deadline, "the victim worker never reached its pause"
        time.sleep(0.05)
    others = [start(machine(keyturn_env, tmp_path, ctx, f"w{i}", **common), "worker", "--id", f"w{i}",
                    "--concurrency", "3", "--lease", "3", "--poll", "0.2", log=tmp_path / f"w{i}.log")
              for i in (1, 2)]
    time.sleep(0.5)  # the others are working units now, the victim still holds its own
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    try:
        assert run.wait(timeout=240) == 0, (tmp_path / "run.log").read_text()
    finally:
        for w in others:
            w.send_signal(signal.SIGTERM)
        for w in others:
            w.wait(timeout=60)
    assert [w.returncode for w in others] == [0, 0]

    ex = executions(ctx, "fleet")[-1]
    assert (ex.status, ex.succeeded, ex.total) == ("success", 60, 60), (tmp_path / "run.log").read_text()
    # The victim's unit was taken over: its pushed-but-unsettled record settled by probing, not pushed again.
    assert "its previous worker's lease expired" in ex.log
    assert "success (taken over by worker w" in ex.log, ex.log
    def holds_exactly_the_vaults(host, user: str) -> str:  # noqa: ANN001
        current = vault_password(ctx, host.name, user)
        if current == host.passwords[user] or not host.password_works(user, current):
            return f"{host.name}/{user} does not accept the vault's new secret"
        if host.password_works(user, host.passwords[user]):
            return f"{host.name}/{user} still accepts its old secret"
        return ""

    with ThreadPoolExecutor(max_workers=12) as pool:  # 120 real logins
        problems = [p for p in pool.map(lambda hu: holds_exactly_the_vaults(*hu),
                                        [(h, u) for h in fleet.hosts for u in users]) if p]
    assert problems == []
    windows = push_windows(windows_file)
    assert len(windows) == 60
    for account, spans in windows.items():
        for i, (w1, s1, e1) in enumerate(spans):
            for w2, s2, e2 in spans[i + 1:]:
                assert w1 == w2 or e1 <= s2 or e2 <= s1, f"account {account} changed by {w1} and {w2} at once"
    assert any(w == "victim" and e == float("inf") for spans in windows.values() for w, _s, e in spans)


@pytest.mark.both_backends
def test_a_queued_run_is_worked_off_by_a_worker_once(ctx: Context, sandbox_fleet, keyturn_env, keyturn_cli,  # noqa: ANN001
                                                     tmp_path: Path, backend: str) -> None:
    users = ["alice", "bob"]
    fleet = sandbox_fleet(2, users=users)
    for host in fleet.hosts:
        enroll(ctx, host, users)
    create_task(ctx, TaskSpec(name="pair", usernames=users, assets=[h.name for h in fleet.hosts]))
    run = start(keyturn_env, "task", "run", "pair", "--workers", log=tmp_path / "run.log")
    while not executions(ctx, "pair"):
        assert run.poll() is None, (tmp_path / "run.log").read_text()
        time.sleep(0.05)
    # Another machine follows the run (it may start late: it shows what settled before it looked).
    watcher_env = machine(keyturn_env, tmp_path, ctx, "watcher") if backend == "postgresql" else keyturn_env
    watcher = start(watcher_env, "records", "follow",
                    str(executions(ctx, "pair")[-1].id), log=tmp_path / "watcher.log")
    worker = keyturn_cli("worker", "--once", "--poll", "0.2", timeout=180)
    # --once may start before the run is queued: keep one going until the run is done.
    while run.poll() is None:
        worker = keyturn_cli("worker", "--once", "--poll", "0.2", timeout=180)
    assert worker.returncode == 0, worker.stderr
    out = (tmp_path / "run.log").read_text()
    assert run.returncode == 0, out
    assert "finished: success; 4 succeeded" in out
    assert watcher.wait(timeout=60) == 0
    seen = (tmp_path / "watcher.log").read_text()
    assert seen.count(": success\n") == 4 and "finished: success; 4 succeeded" in seen, seen
    ex = executions(ctx, "pair")[-1]
    assert (ex.status, ex.trigger, ex.succeeded) == ("success", "cli", 4)
    for host in fleet.hosts:
        for user in users:
            assert host.password_works(user, vault_password(ctx, host.name, user))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_worker_with_another_master_key_refuses_to_start(ctx: Context, keyturn_env, keyturn_cli,  # noqa: ANN001
                                                           tmp_path: Path) -> None:
    from storage.inventory import upsert_account, upsert_asset

    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="127.0.0.1")
        upsert_account(ctx.db, s, asset, "alice", secret="some-password")
    other = machine(keyturn_env, tmp_path, ctx, "wrong-key")
    key_path(Path(other["KEYTURN_HOME"])).write_bytes(os.urandom(32))
    proc = keyturn_cli("worker", "--once", env={"KEYTURN_HOME": other["KEYTURN_HOME"]})
    assert proc.returncode == 2
    assert "master key does not match" in proc.stderr, proc.stderr
    assert "worker" not in proc.stdout


def test_a_taken_over_push_is_judged_only_after_its_deadline(ctx: Context, sandbox_fleet, keyturn_env,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    from storage import executions as rec

    users = ["alice", "bob"]
    host = sandbox_fleet(1, users=users).hosts[0]
    enroll(ctx, host, users)
    create_task(ctx, TaskSpec(name="pair", usernames=users, assets=[host.name]))
    flag = tmp_path / "paused"
    # The push deadline: 3 s + two 5 s margins after `pushing`. Not shorter: the taker must start (a new process,
    # the 2 s lease, its poll) before that deadline, or there is nothing left to wait for (2 s margins: it came late).
    fast = {"KEYTURN_COMMAND_TIMEOUT": "3"}
    # The victim dies with alice `pushing` but not pushed: nothing proves the push will not still land.
    victim = start({**keyturn_env, **fast, "KEYTURN_TEST_PAUSE_AFTER": f"pushing:{flag}"}, "worker", "--lease", "2",
                   "--poll", "0.2", log=tmp_path / "victim.log")
    run = start(keyturn_env, "task", "run", "pair", "--workers", log=tmp_path / "run.log")
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert victim.poll() is None and time.monotonic() < deadline, (tmp_path / "victim.log").read_text()
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    taker = start({**keyturn_env, **fast}, "worker", "--id", "taker", "--lease", "2", "--poll", "0.2",
                  log=tmp_path / "taker.log")
    try:
        assert run.wait(timeout=120) == 1, (tmp_path / "run.log").read_text()
    finally:
        taker.send_signal(signal.SIGTERM)
        taker.wait(timeout=60)
    by_user = {r.username: r for r in rec.list_records(ctx.db, task="pair")}
    alice = by_user["alice"]
    assert (alice.status, alice.error) == ("failed", "host kept the old secret")
    pushed_deadline = rec.record_deadline(ctx.db, alice.id)
    assert pushed_deadline is not None and alice.finished_at is not None
    assert alice.finished_at >= pushed_deadline, "the taken-over record was judged before its push deadline"
    assert by_user["bob"].status == "success"
    ex = executions(ctx, "pair")[-1]
    assert "may still land until" in ex.log and (ex.status, ex.succeeded) == ("partial", 1)
    for user in users:
        assert host.password_works(user, vault_password(ctx, host.name, user))
    assert host.password_works("alice", host.passwords["alice"])


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_scheduled_run_on_workers_is_finished_by_them_when_the_schedulers_machine_dies(
        ctx: Context, sandbox_fleet, keyturn_env, tmp_path: Path) -> None:  # noqa: ANN001
    from storage import workunits as units
    from tests.integration.test_scheduler_runs import due_now

    users = ["alice", "bob"]
    fleet = sandbox_fleet(2, users=users)
    for host in fleet.hosts:
        enroll(ctx, host, users)
    create_task(ctx, TaskSpec(name="nightly", usernames=users, assets=[h.name for h in fleet.hosts], interval_hours=24))
    due_now(ctx, "nightly")
    scheduler = start(machine(keyturn_env, tmp_path, ctx, "sched"), "scheduler", "--once", "--on-workers",
                      log=tmp_path / "scheduler.log")
    deadline = time.monotonic() + 120
    while not (executions(ctx, "nightly") and units.is_worker_run(ctx.db, executions(ctx, "nightly")[-1].id)):
        assert scheduler.poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
        time.sleep(0.05)
    os.kill(scheduler.pid, signal.SIGKILL)  # the machine goes off with the run queued, no host touched yet
    scheduler.wait()
    worker = start(machine(keyturn_env, tmp_path, ctx, "w"), "worker", "--once", "--poll", "0.2",
                   log=tmp_path / "worker.log")
    assert worker.wait(timeout=180) == 0, (tmp_path / "worker.log").read_text()
    [ex] = executions(ctx, "nightly")
    assert (ex.trigger, ex.status, ex.succeeded, ex.total) == ("schedule", "success", 4, 4), ex.log
    for host in fleet.hosts:
        for user in users:
            assert host.password_works(user, vault_password(ctx, host.name, user))
