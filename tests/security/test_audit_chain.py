"""Finding 7: the audit chain is an HMAC under a key outside the database, with an external anchor.

The old chain was plain SHA-256: deleting events 7-129, renumbering and re-hashing the rest passed `audit
verify`. Now the re-hashed chain fails without audit.key, and deleting the newest events (which leaves a
valid, shorter chain) shows against the head forwarded to syslog.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import stat
from pathlib import Path

from core.audit import list_events, record_event, verify_chain
from core.config import Settings
from core.context import Context, open_context
from storage import audit as store
from storage.tables import AuditEvent


def _raw(ctx: Context) -> sqlite3.Connection:
    return sqlite3.connect(ctx.settings.db_path, isolation_level=None)


def _fill(ctx: Context, n: int) -> None:
    for i in range(n):
        record_event(ctx, "asset.edit", "asset", f"web{i}", {"field": "address", "n": i})


def _rehash_without_key(conn: sqlite3.Connection) -> None:
    """What a tamperer with the database (not the data directory) can do: re-chain with plain SHA-256."""
    cols = "id, ts, actor, action, object_type, object_id, detail, source"
    prev = ""
    for row in conn.execute(f"SELECT {cols} FROM audit_event ORDER BY id").fetchall():
        ev = AuditEvent(id=row[0], ts=__import__("datetime").datetime.fromisoformat(row[1]).replace(
            tzinfo=__import__("datetime").timezone.utc), actor=row[2], action=row[3], object_type=row[4],
            object_id=row[5], detail=json.loads(row[6]), source=row[7], prev_hash=prev, hash="")
        h = hashlib.sha256(store.canonical(ev.id, ev.ts, ev.actor, ev.action, ev.object_type, ev.object_id,
                                           ev.detail, ev.source, prev)).hexdigest()
        conn.execute("UPDATE audit_event SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, row[0]))
        prev = h


def test_deleting_7_to_129_and_rehashing_is_detected(ctx: Context) -> None:
    _fill(ctx, 200)
    assert verify_chain(ctx).ok
    with _raw(ctx) as conn:
        conn.execute("DELETE FROM audit_event WHERE id BETWEEN 7 AND 129")
        for old in range(130, 201):
            conn.execute("UPDATE audit_event SET id = ? WHERE id = ?", (old - 123, old))
        _rehash_without_key(conn)
    result = verify_chain(ctx)
    assert not result.ok and result.first_bad_id == 1 and "changed" in result.reason


def test_the_key_lives_beside_master_key_owner_only_and_not_in_the_database(ctx: Context) -> None:
    _fill(ctx, 3)
    key_file = ctx.home / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and (ctx.home / "master.key").exists()
    key = key_file.read_bytes()
    data = Path(ctx.settings.db_path).read_bytes()
    assert key not in data and key.hex().encode() not in data


def test_deleting_the_newest_events_shows_against_the_forwarded_head(settings: Settings, tmp_path: Path) -> None:
    sock_path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(sock_path)
    receiver.settimeout(5)
    settings.audit_syslog = sock_path
    ctx = open_context(settings, operator="alice", source="ssh 10.0.0.9")
    try:
        _fill(ctx, 10)
        lines = [receiver.recv(4096).decode() for _ in range(10)]
        assert all(line.startswith("<85>keyturn[") for line in lines)
        last = dict(part.split("=", 1) for part in lines[-1].split(": ", 1)[1].split() if "=" in part)
        head = (int(last["id"]), last["hash"])
        assert head == (10, list_events(ctx, limit=1)[0].hash)
        assert "actor=alice" in lines[-1] and 'source="ssh 10.0.0.9"' in lines[-1]
        assert verify_chain(ctx, expect_head=head).ok
        with _raw(ctx) as conn:
            conn.execute("DELETE FROM audit_event WHERE id > 7")
        assert verify_chain(ctx).ok  # a shorter chain is still a valid chain...
        result = verify_chain(ctx, expect_head=head)  # ...but not the one whose head went to syslog
        assert not result.ok and "newest events were deleted" in result.reason
    finally:
        ctx.close()
        receiver.close()


def test_a_rolled_back_change_forwards_nothing(settings: Settings, tmp_path: Path) -> None:
    from core.audit import record_event_in

    sock_path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(sock_path)
    receiver.setblocking(False)
    settings.audit_syslog = sock_path
    ctx = open_context(settings, operator="alice")
    try:
        try:
            with ctx.db.write() as s:
                record_event_in(s, ctx, "asset.edit", "asset", "web1", {})
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
        try:
            got = receiver.recv(4096)
        except BlockingIOError:
            got = b""
        assert got == b""
    finally:
        ctx.close()
        receiver.close()


def test_an_existing_keyless_chain_is_checked_then_keyed(settings: Settings) -> None:
    ctx = open_context(settings, operator="alice")
    _fill(ctx, 5)
    with ctx.db.write() as s:
        store.rechain(s, None)  # type: ignore[arg-type]  # the trail as the previous release wrote it
    ctx.close()
    os.unlink(settings.home / "audit.key")
    ctx = open_context(settings, operator="alice")
    try:
        result = verify_chain(ctx)
        assert result.ok and result.checked == 6
        event = list_events(ctx, limit=1)[0]
        assert event.action == "audit.chain-keyed" and event.detail == {"events": 5, "earlier_chain_ok": True}
    finally:
        ctx.close()


def test_audit_verify_checks_a_forwarded_head_on_the_command_line(keyturn_cli, settings: Settings) -> None:  # noqa: ANN001
    ctx = open_context(settings, operator="tester")
    try:
        _fill(ctx, 5)
        head = list_events(ctx, limit=1)[0]
        with _raw(ctx) as conn:
            conn.execute("DELETE FROM audit_event WHERE id > 3")
    finally:
        ctx.close()
    plain = keyturn_cli("audit", "verify")
    assert plain.returncode == 0  # a shorter chain is valid on its own
    anchored = keyturn_cli("audit", "verify", "--head", f"{head.id}:{head.hash}")
    assert anchored.returncode == 1 and "newest events were deleted" in anchored.stdout
