"""The audit trail: who did what to which object, when and from where, in a hash chain that shows tampering."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from core import textsafe
from core.context import Context
from core.errors import KeyturnError
from storage import audit as store
from storage.audit import AuditEventInfo, VerifyResult

__all__ = ["AuditEventInfo", "AuditUnavailable", "VerifyResult", "record_event", "record_event_in", "list_events", "verify_chain",
           "scrub_detail"]

class AuditUnavailable(KeyturnError):
    """The audit trail cannot be written; whatever needed the event is refused (fail closed)."""

    exit_code = 4


# A key named like one of these may hold a secret, so it never reaches the trail...
_SECRET_KEY = re.compile(r"secret|password|passwd|passphrase|totp|otp|private|token|credential|pkey", re.I)
# ...unless it only describes a secret's kind or how it is made, which the trail should keep.
_SAFE_KEY = re.compile(r"(_type|_types|_strategy|_rules|_count|_length|_algorithm|_changed|_version)$", re.I)


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _SAFE_KEY.search(key)


def scrub_detail(detail: Any) -> Any:
    """A copy of detail without any key named like a secret (recursively); dropped keys are listed."""
    if isinstance(detail, dict):
        out: dict[str, Any] = {}
        dropped: list[str] = []
        for key, value in detail.items():
            if _is_secret_key(str(key)):
                dropped.append(str(key))
            else:
                out[str(key)] = scrub_detail(value)
        if dropped:
            out["redacted_keys"] = sorted(dropped)
        return out
    if isinstance(detail, (list, tuple)):
        return [scrub_detail(v) for v in detail]
    return detail


def record_event_in(session: Session, ctx: Context, action: str, object_type: str, object_id: object,
                    detail: dict | None = None, *, actor: str | None = None) -> AuditEventInfo:
    """Append an event inside an open db.write() session, so it commits (or not) with the change it records."""
    try:
        # Names, ids, details and the source (SSH_CLIENT, a tty name) may come from outside: stored clean.
        return store.append_event(
            session, actor=textsafe.clean_line(actor if actor is not None else (ctx.operator or "")), action=action,
            object_type=object_type, object_id="" if object_id is None else textsafe.clean_line(str(object_id)),
            detail=textsafe.clean_value(scrub_detail(detail or {})),  # type: ignore[arg-type]
            source=textsafe.clean_line(ctx.source or ""),
        )
    except SQLAlchemyError as exc:
        # Only the driver's own message: SQLAlchemy's text would repeat the statement's parameters.
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        raise AuditUnavailable(f"the audit trail could not be written ({reason}); refusing {action}") from None


def record_event(ctx: Context, action: str, object_type: str, object_id: object, detail: dict | None = None) -> None:
    """Append one event in its own transaction (actor = ctx.operator, source = ctx.source)."""
    try:
        with ctx.db.write() as session:
            record_event_in(session, ctx, action, object_type, object_id, detail)
    except SQLAlchemyError as exc:  # the commit itself failed (disk full, locked too long)
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        raise AuditUnavailable(f"the audit trail could not be written ({reason}); refusing {action}") from None


def list_events(ctx: Context, *, limit: int = 50, before_id: int | None = None, action: str | None = None,
                actor: str | None = None) -> list[AuditEventInfo]:
    """Newest events first (before_id pages back; action 'mfa.*' matches a prefix)."""
    return store.list_events(ctx.db, limit=limit, before_id=before_id, action=action, actor=actor)


def verify_chain(ctx: Context) -> VerifyResult:
    """Check every event's id, link and hash; the result names the first broken link."""
    return store.verify_chain(ctx.db)
