"""keyturn's own storage on a PostgreSQL server: migrations, `keyturn db`, several starters, clear errors."""

from __future__ import annotations


import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import storage.tables  # noqa: F401
from storage.db import HEAD_REVISION, Database
from tests.conftest import ROOT


def test_an_empty_database_upgrades_to_a_schema_equal_to_the_models(keyturn_cli, pg_machine_empty: str) -> None:
    """On the machine's own server (durable, shared with others); the other PostgreSQL tests use a private one."""
    env = {"KEYTURN_DATABASE_URL": pg_machine_empty}
    status = keyturn_cli("db", "status", env=env)
    assert status.returncode == 1 and "(postgresql)" in status.stdout and "schema: empty" in status.stdout
    up = keyturn_cli("db", "upgrade", env=env, check=True)
    assert f"schema empty -> {HEAD_REVISION}" in up.stdout
    db = Database(pg_machine_empty)
    try:
        assert db.current_revision() == HEAD_REVISION
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
        assert diff == [], f"migrations and models disagree on PostgreSQL: {diff}"
    finally:
        db.close()
    again = keyturn_cli("db", "upgrade", env=env, check=True)
    assert "nothing to do" in again.stdout
    assert keyturn_cli("db", "status", env=env).returncode == 0


def test_three_processes_starting_on_an_empty_database_at_once_all_work(keyturn_env: dict[str, str], tmp_path,  # noqa: ANN001
                                                                       pg_empty: str) -> None:
    """Workers started together on a new server: one migrates, the others wait for it; none fails."""
    procs = []
    for i in range(3):
        env = {**keyturn_env, "KEYTURN_DATABASE_URL": pg_empty, "KEYTURN_HOME": str(tmp_path / f"machine{i}")}
        procs.append(subprocess.Popen([sys.executable, "-m", "tui", "db", "upgrade"], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sum("schema empty ->" in out for out, _ in outputs) >= 1
    db = Database(pg_empty)
    assert db.current_revision() == HEAD_REVISION
    db.close()


def test_a_server_that_does_not_answer_is_a_clear_error_without_the_password(keyturn_cli) -> None:
    url = "postgresql+psycopg://keyturn:sekrit-pw@127.0.0.1:1/keyturn"
    for args in (("asset", "list"), ("db", "upgrade")):
        proc = keyturn_cli(*args, env={"KEYTURN_DATABASE_URL": url})
        assert proc.returncode == 2
        assert "keyturn: error: cannot use the database postgresql+psycopg://keyturn:***@127.0.0.1:1/keyturn" in proc.stderr
        assert "sekrit-pw" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
