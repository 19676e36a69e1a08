"""The audit chain: a clean chain verifies; an edited, deleted or reordered row is reported by id."""

from __future__ import annotations

import threading

import pytest

from core.audit import AuditUnavailable, list_events, record_event, scrub_detail, verify_chain
from core.context import open_context
from tests.pg import RawConnection, raw_connection

pytestmark = pytest.mark.both_backends


@pytest.fixture
def chain(ctx):
    """Five events written through the public API."""
    for i in range(1, 6):
        record_event(ctx, "task.edit", "task", f"t{i}", {"field": "description", "n": i})
    return ctx


def raw(ctx) -> RawConnection:
    """A plain connection to the same database, as a tamperer would use."""
    return raw_connection(ctx.settings)


def test_clean_chain_verifies(chain):
    result = verify_chain(chain)
    assert result.ok and result.checked == 5 and result.first_bad_id is None
    events = list_events(chain)
    assert [e.id for e in events] == [5, 4, 3, 2, 1]
    assert events[-1].prev_hash == "" and events[0].prev_hash == events[1].hash
    assert result.head_hash == events[0].hash
    assert events[0].actor == "tester" and events[0].source == "pytest"


def test_empty_chain_verifies(ctx):
    result = verify_chain(ctx)
    assert result.ok and result.checked == 0


def test_edited_detail_is_reported(chain):
    with raw(chain) as conn:
        conn.execute("""UPDATE audit_event SET detail = '{"field": "description", "n": 99}' WHERE id = 3""")
    result = verify_chain(chain)
    assert not result.ok and result.first_bad_id == 3 and "changed" in result.reason and result.checked == 2


def test_edited_actor_is_reported(chain):
    with raw(chain) as conn:
        conn.execute("UPDATE audit_event SET actor = 'mallory' WHERE id = 4")
    assert verify_chain(chain).first_bad_id == 4


def test_deleted_row_is_reported(chain):
    with raw(chain) as conn:
        conn.execute("DELETE FROM audit_event WHERE id = 2")
    result = verify_chain(chain)
    assert not result.ok and result.first_bad_id == 3 and "2" in result.reason and "missing" in result.reason


def test_deleted_first_row_is_reported(chain):
    with raw(chain) as conn:
        conn.execute("DELETE FROM audit_event WHERE id = 1")
    result = verify_chain(chain)
    assert not result.ok and result.first_bad_id == 2


def test_deleted_row_with_ids_renumbered_is_reported(chain):
    """A careful tamperer closes the id gap too; the broken link still shows."""
    with raw(chain) as conn:
        conn.execute("DELETE FROM audit_event WHERE id = 2")
        for i in (3, 4, 5):
            conn.execute("UPDATE audit_event SET id = ? WHERE id = ?", (i - 1, i))
    result = verify_chain(chain)
    assert not result.ok and result.first_bad_id == 2 and "link" in result.reason


def test_swapped_rows_are_reported(chain):
    cols = "ts, actor, action, object_type, object_id, detail, source, prev_hash, hash"
    with raw(chain) as conn:
        two = conn.execute(f"SELECT {cols} FROM audit_event WHERE id = 2").fetchone()
        four = conn.execute(f"SELECT {cols} FROM audit_event WHERE id = 4").fetchone()
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        conn.execute(f"UPDATE audit_event SET {sets} WHERE id = 2", four)
        conn.execute(f"UPDATE audit_event SET {sets} WHERE id = 4", two)
    result = verify_chain(chain)
    assert not result.ok and result.first_bad_id == 2


def test_detail_never_keeps_secret_keys(ctx):
    record_event(ctx, "task.create", "task", "t", {"name": "t", "specific_secret": "hunter2", "secret_type": "password",
                                                  "nested": {"become_password": "pw", "port": 22}, "totp": "123"})
    event = list_events(ctx)[0]
    assert "hunter2" not in str(event.detail) and "pw" not in str(event.detail.get("nested"))
    assert event.detail["secret_type"] == "password" and event.detail["nested"]["port"] == 22
    assert sorted(event.detail["redacted_keys"]) == ["specific_secret", "totp"]
    assert scrub_detail({"ssh_key_strategy": "append"}) == {"ssh_key_strategy": "append"}
    assert verify_chain(ctx).ok


def test_two_processes_appending_at_once_keep_one_chain(ctx, settings):
    """Writers queue on the database write lock, so the chain never forks."""
    others = [open_context(settings, operator=f"w{i}", source="thread") for i in range(4)]
    try:
        def write(c) -> None:
            for n in range(15):
                record_event(c, "test.write", "thread", c.operator, {"n": n})

        threads = [threading.Thread(target=write, args=(c,)) for c in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in others:
            c.close()
    result = verify_chain(ctx)
    assert result.ok and result.checked == 60


def test_audit_failure_raises_a_clear_error(ctx):
    with raw(ctx) as conn:
        if conn.postgres:
            conn.execute("CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'audit is read-only'; END $$")
            conn.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION no_audit()")
        else:
            conn.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'audit is read-only'); END")
    with pytest.raises(AuditUnavailable, match="audit is read-only"):
        record_event(ctx, "task.edit", "task", "t", {})
