"""Repository for the audit trail: an append-only chain of events, each holding the hash of the one before.

The hash covers (id, ts, actor, action, object_type, object_id, detail, source, prev_hash) as canonical JSON,
so an edited, deleted or reordered row breaks the chain at a place verify_chain can name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage import txlocks
from storage.db import Database
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


def event_hash(row: AuditEvent) -> str:
    """SHA-256 (hex) of a row's canonical form."""
    data = canonical(row.id or 0, row.ts, row.actor, row.action, row.object_type, row.object_id,
                     row.detail or {}, row.source, row.prev_hash)
    return hashlib.sha256(data).hexdigest()


def _info(row: AuditEvent) -> AuditEventInfo:
    return AuditEventInfo(row.id or 0, row.ts, row.actor, row.action, row.object_type, row.object_id,
                          dict(row.detail or {}), row.source, row.prev_hash, row.hash)


def append_event(session: Session, *, actor: str, action: str, object_type: str = "", object_id: str = "",
                 detail: dict[str, Any] | None = None, source: str = "", ts: datetime | None = None) -> AuditEventInfo:
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
    row.hash = event_hash(row)
    session.add(row)
    session.flush()
    return _info(row)


def list_events(db: Database, *, limit: int = 50, before_id: int | None = None, action: str | None = None,
                actor: str | None = None, object_type: str | None = None, object_id: str | None = None) -> list[AuditEventInfo]:
    """Newest events first; before_id pages back; action may end in '*' to match a prefix ('mfa.*')."""
    with db.read() as s:
        stmt = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
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


def count_events(db: Database) -> int:
    """How many events the trail holds."""
    with db.read() as s:
        return int(s.exec(select(func.count()).select_from(AuditEvent)).one())


def verify_chain(db: Database, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain oldest first; report the first event whose id, link or hash does not check out."""
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
                if event_hash(row) != row.hash:
                    return VerifyResult(False, checked, rid, f"event {rid} was changed after it was written (hash mismatch)")
                checked += 1
                prev_hash = row.hash
                prev_id = rid
    return VerifyResult(True, checked, None, "", prev_hash)
