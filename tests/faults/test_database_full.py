"""Defect 5: the disk under the database fills mid-run. The run stops starting accounts, says so in plain
words, exits non-zero without a traceback, and `keyturn reconcile` settles the open records once there is room.

The data directory is a 4 MB tmpfs mounted by the test (root only); the disk is filled while the run is held
just after its first push (the engine's KEYTURN_TEST_PAUSE_AFTER hook).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import load_settings
from core.context import Context, open_context
from storage import executions as rec
from tests.conftest import ROOT
from tests.faults.conftest import mismatches
from tests.integration.test_rotation import build_inventory, make_task, reset_host, wait_past_deadlines
from tests.sandbox import SandboxFleet, require_sandbox

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob", "carol")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs needs root, and CI is set")
        pytest.skip("SKIPPED LOUDLY: mounting a tmpfs to fill needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    chunk = b"\0" * 65536
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
        try:
            os.fsync(f.fileno())
        except OSError:
            pass


def test_a_full_disk_mid_run_stops_cleanly_and_reconcile_settles_later(small_disk: Path, tmp_path: Path) -> None:
    require_sandbox()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_HOME=str(small_disk / "home"), KEYTURN_CONFIG=str(tmp_path / "config.toml"),
               KEYTURN_OPERATOR="tester", KEYTURN_COMMAND_TIMEOUT="3", KEYTURN_DEADLINE_MARGIN="2")
    settings = load_settings(env=env)
    with SandboxFleet(1, users=USERS) as fleet:
        hosts = list(fleet)
        reset_host(hosts[0], USERS)
        ctx: Context = open_context(settings, operator="tester")
        build_inventory(ctx, hosts, USERS)
        make_task(ctx, "full", hosts, USERS)
        ctx.close()  # the run is the only writer: its WAL must grow, and the full disk stops it
        flag = tmp_path / "pushed"
        proc = subprocess.Popen([sys.executable, "-m", "tui", "task", "run", "full", "--no-reconcile"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**env, "KEYTURN_TEST_PAUSE_AFTER": f"pushed:{flag}",
                                     "KEYTURN_TEST_PAUSE_SECONDS": "3"})
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run never pushed"
            time.sleep(0.05)
        _fill(small_disk / "filler")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode not in (0, 1) and proc.returncode > 0, out + err
        assert "Traceback" not in err and "OperationalError" not in out + err, err
        assert "the database cannot be written" in err and "keyturn reconcile" in err, err

        (small_disk / "filler").unlink()
        ctx = open_context(settings, operator="tester")
        try:
            records = rec.list_records(ctx.db)
            assert len(records) == len(USERS)
            assert sum(r.status == "pending" for r in records) >= 1  # no new account was started
            subprocess.run([sys.executable, "-m", "tui", "reconcile"], env=env, cwd=ROOT, capture_output=True)
            wait_past_deadlines(ctx)
            last = subprocess.run([sys.executable, "-m", "tui", "reconcile"], env=env, cwd=ROOT, capture_output=True,
                                  text=True)
            assert last.returncode == 0, last.stdout + last.stderr
            assert all(r.status in ("success", "failed") for r in rec.list_records(ctx.db))
            assert rec.get_execution(ctx.db, records[0].execution_id).status == "interrupted"
            assert mismatches(ctx, hosts, USERS) == []
        finally:
            ctx.close()
