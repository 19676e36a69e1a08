"""Repository for the audit trail: an append-only chain of events, each holding the HMAC of the one before.

The HMAC-SHA256 (under audit.key, a file beside master.key and outside the database) covers (id, ts, actor,
action, object_type, object_id, detail, source, prev_hash) as canonical JSON, so an edited, deleted or
reordered row breaks the chain at a place verify_chain can name, and someone who can only write the
database cannot re-chain it after deleting events. Deleting the newest events leaves a valid shorter chain:
that is caught by comparing with a head forwarded elsewhere (syslog/journald, see core.audit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage import txlocks
from storage.db import Database
from storage.keyfile import KEY_BYTES, audit_key_paths, read_key, sync_dir, write_key
from storage.tables import AuditEvent, utcnow


@dataclass(frozen=True)
class AuditEventInfo:
    """One audit event as core and the UI see it."""

    id: int
    ts: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    detail: dict
    source: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking the chain: ok, how many events were checked, and the first broken link."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""
    head_hash: str = ""


def _ts_text(ts: datetime) -> str:
    # Microsecond ISO in UTC: the same text before the insert and after SQLite hands the value back.
    return ts.astimezone(timezone.utc).isoformat(timespec="microseconds")


def canonical(event_id: int, ts: datetime, actor: str, action: str, object_type: str, object_id: str,
              detail: dict, source: str, prev_hash: str) -> bytes:
    """The exact bytes an event's hash is taken over."""
    body = {
        "id": event_id, "ts": _ts_text(ts), "actor": actor, "action": action, "object_type": object_type,
        "object_id": object_id, "detail": detail, "source": source, "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def event_hash(row: AuditEvent, key: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of a row's canonical form under key; plain SHA-256 only for a chain without a key."""
    data = canonical(row.id or 0, row.ts, row.actor, row.action, row.object_type, row.object_id,
                     row.detail or {}, row.source, row.prev_hash)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _info(row: AuditEvent) -> AuditEventInfo:
    return AuditEventInfo(row.id or 0, row.ts, row.actor, row.action, row.object_type, row.object_id,
                          dict(row.detail or {}), row.source, row.prev_hash, row.hash)


def append_event(session: Session, *, actor: str, action: str, object_type: str = "", object_id: str = "",
                 detail: dict[str, Any] | None = None, source: str = "", ts: datetime | None = None,
                 key: bytes | None = None) -> AuditEventInfo:
    """Append one event inside the caller's write transaction (which holds the database write lock).

    The id is chosen here (last id + 1) because it is part of the hashed text; with the write lock held
    (BEGIN IMMEDIATE) no other process can append between reading the head and inserting.
    """
    txlocks.hold(session, txlocks.AUDIT_APPEND)  # PostgreSQL: one appender at a time, as SQLite's writer lock gives
    head = session.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    # Round-trip detail through JSON now so the hashed form equals what the JSON column gives back.
    clean = json.loads(json.dumps(detail or {}, sort_keys=True, default=str))
    row = AuditEvent(
        id=(head.id if head else 0) + 1, ts=(ts or utcnow()).astimezone(timezone.utc), actor=actor or "",
        action=action, object_type=object_type or "", object_id=str(object_id or ""), detail=clean,
        source=source or "", prev_hash=head.hash if head else "", hash="",
    )
    row.hash = event_hash(row, key)
    session.add(row)
    session.flush()
    return _info(row)


def list_events(db: Database, *, limit: int = 50, before_id: int | None = None, action: str | None = None,
                actor: str | None = None, object_type: str | None = None, object_id: str | None = None,
                visible: Any = None) -> list[AuditEventInfo]:
    """Newest events first; before_id pages back; action may end in '*' to match a prefix ('mfa.*');
    visible: a where-clause limiting the events (storage.scopes.audit_visible), None for all."""
    with db.read() as s:
        stmt = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
        if visible is not None:
            stmt = stmt.where(visible)
        if before_id is not None:
            stmt = stmt.where(col(AuditEvent.id) < before_id)
        if action:
            if action.endswith("*"):
                prefix = action[:-1].replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
                stmt = stmt.where(col(AuditEvent.action).like(prefix + "%", escape="\\"))
            else:
                stmt = stmt.where(AuditEvent.action == action)
        if actor:
            stmt = stmt.where(AuditEvent.actor == actor)
        if object_type:
            stmt = stmt.where(AuditEvent.object_type == object_type)
        if object_id is not None:
            stmt = stmt.where(AuditEvent.object_id == object_id)
        return [_info(r) for r in s.exec(stmt).all()]


def count_events(db: Database, *, visible: Any = None) -> int:
    """How many events the trail holds (those matching visible, when given)."""
    with db.read() as s:
        stmt = select(func.count()).select_from(AuditEvent)
        if visible is not None:
            stmt = stmt.where(visible)
        return int(s.exec(stmt).one())


def open_audit_key(db: Database, home: Path) -> bool:
    """Load audit.key into db; on first use create it and re-key the existing chain. True when it did that.

    The new key waits as audit.key.new until the re-keyed chain has committed, so a crash in between only
    repeats the re-keying; an existing trail is checked under its old (keyless) hashes first and the result
    is recorded in an `audit.chain-keyed` event.
    """
    path, pending = audit_key_paths(home)
    if path.exists():
        db.audit_key = read_key(path)
        return False
    if not pending.exists():
        write_key(pending, os.urandom(KEY_BYTES))
    key = read_key(pending)
    db.audit_key = None
    before = verify_chain(db)
    with db.write() as session:
        count = rechain(session, key)
        if count:
            detail = {"events": count, "earlier_chain_ok": before.ok}
            if not before.ok:
                detail.update(earlier_first_bad=before.first_bad_id, earlier_reason=before.reason)
            append_event(session, actor="keyturn", action="audit.chain-keyed", object_type="audit", detail=detail,
                         key=key)
    os.replace(pending, path)
    sync_dir(home)
    db.audit_key = key
    return True


def rechain(session: Session, key: bytes) -> int:
    """Recompute every event's link and HMAC under key, oldest first (once, when the key is created)."""
    prev = ""
    count = 0
    for row in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all():
        row.prev_hash = prev
        row.hash = event_hash(row, key)
        session.add(row)
        prev = row.hash
        count += 1
    session.flush()
    return count


def verify_chain(db: Database, *, batch: int = 5000, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain oldest first; report the first event whose id, link or HMAC does not check out.

    expect_head: an (id, hash) forwarded earlier (syslog, a ticket); the chain must still hold that event.
    """
    key = db.audit_key
    checked = 0
    prev_hash = ""
    prev_id = 0
    with db.read() as s:
        while True:
            rows = s.exec(select(AuditEvent).where(col(AuditEvent.id) > prev_id)
                          .order_by(col(AuditEvent.id)).limit(batch)).all()
            if not rows:
                break
            for row in rows:
                rid = row.id or 0
                if rid != prev_id + 1:
                    missing = f"{prev_id + 1}" if rid == prev_id + 2 else f"{prev_id + 1}..{rid - 1}"
                    return VerifyResult(False, checked, rid, f"event(s) {missing} before event {rid} are missing (deleted)")
                if row.prev_hash != prev_hash:
                    return VerifyResult(False, checked, rid, f"event {rid} does not link to event {prev_id} "
                                        "(an earlier event was deleted, reordered or edited)")
                if not hmac.compare_digest(event_hash(row, key), row.hash):
                    return VerifyResult(False, checked, rid, f"event {rid} was changed after it was written (hash mismatch)")
                checked += 1
                prev_hash = row.hash
                prev_id = rid
    if expect_head is not None:
        want_id, want_hash = expect_head
        if want_id > prev_id:
            return VerifyResult(False, checked, want_id, f"event {want_id} was forwarded (head {want_hash[:16]}...) but the "
                                f"trail ends at event {prev_id}: the newest events were deleted")
        with db.read() as s:
            row = s.get(AuditEvent, want_id)
        if row is None or not hmac.compare_digest(row.hash, want_hash):
            return VerifyResult(False, checked, want_id, f"event {want_id} does not match the forwarded head")
    return VerifyResult(True, checked, None, "", prev_hash)
