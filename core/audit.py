"""The audit trail: who did what to which object, when and from where, in a hash chain that shows tampering."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from sqlalchemy import event as sa_event
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


# syslog facility authpriv (10), severity notice (5): where sudo and sshd write who did what.
_SYSLOG_PRI = 10 * 8 + 5


def syslog_line(event: AuditEventInfo) -> str:
    """The forwarded form of an event: its id and HMAC (the anchor) and who did what from where."""
    return (f"audit id={event.id} hash={event.hash} actor={event.actor} action={event.action} "
            f"object={event.object_type}:{event.object_id} source={json.dumps(event.source)}")


def forward_to_syslog(socket_path: str, events: list[AuditEventInfo]) -> None:
    """Send events to a syslog socket (RFC 3164 datagrams); a warning on stderr when that fails."""
    import socket
    import sys

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(socket_path)
            for event in events:
                sock.send(f"<{_SYSLOG_PRI}>keyturn[{os.getpid()}]: {syslog_line(event)}".encode())
    except OSError as exc:
        ids = ", ".join(str(e.id) for e in events)
        print(f"keyturn: warning: audit event(s) {ids} not forwarded to {socket_path}: {exc.strerror or exc}",
              file=sys.stderr)


def _forward_after_commit(session: Session, ctx: Context, event: AuditEventInfo) -> None:
    """Queue event for syslog once its transaction commits (a rolled-back event is never forwarded)."""
    path = ctx.settings.audit_syslog
    if not path:
        return
    pending: list[AuditEventInfo] | None = session.info.get("keyturn_audit_forward")
    if pending is None:
        pending = session.info["keyturn_audit_forward"] = []

        def after_commit(sess: Session) -> None:
            events = list(sess.info.pop("keyturn_audit_forward", []))
            if events:
                forward_to_syslog(path, events)

        def after_rollback(sess: Session, _previous: object) -> None:
            sess.info.pop("keyturn_audit_forward", None)

        sa_event.listen(session, "after_commit", after_commit, once=True)
        sa_event.listen(session, "after_soft_rollback", after_rollback, once=True)
    pending.append(event)


def record_event_in(session: Session, ctx: Context, action: str, object_type: str, object_id: object,
                    detail: dict | None = None, *, actor: str | None = None) -> AuditEventInfo:
    """Append an event inside an open db.write() session, so it commits (or not) with the change it records."""
    try:
        # Names, ids, details and the source (SSH_CLIENT, a tty name) may come from outside: stored clean.
        event = store.append_event(
            session, actor=textsafe.clean_line(actor if actor is not None else (ctx.operator or "")), action=action,
            object_type=object_type, object_id="" if object_id is None else textsafe.clean_line(str(object_id)),
            detail=textsafe.clean_value(scrub_detail(detail or {})),  # type: ignore[arg-type]
            source=textsafe.clean_line(ctx.source or ""), key=ctx.db.audit_key,
        )
        _forward_after_commit(session, ctx, event)
        return event
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
    """Newest events first (before_id pages back; action 'mfa.*' matches a prefix); for an operator limited to
    node subtrees only their own events and events about what lies in the scope (visible_events)."""
    return store.list_events(ctx.db, limit=limit, before_id=before_id, action=action, actor=actor,
                             visible=visible_events(ctx))


def count_events(ctx: Context) -> int:
    """How many events list_events can page through for the acting person."""
    return store.count_events(ctx.db, visible=visible_events(ctx))


def visible_events(ctx: Context):  # type: ignore[no-untyped-def]
    """The where-clause limiting a scoped operator's audit reads (storage.scopes.audit_visible); None: all."""
    from core.scopes import scope_filter, visible_tasks
    from storage.scopes import audit_visible

    scope = scope_filter(ctx)
    if scope is None or not ctx.operator:
        return None
    return audit_visible(ctx.operator, scope, visible_tasks(ctx) or frozenset())


def verify_chain(ctx: Context, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Check every event's id, link and HMAC; the result names the first broken link.

    expect_head: (id, hash) of an event forwarded earlier (syslog): the trail must still hold it unchanged,
    which is what shows that its newest events were not deleted.
    """
    return store.verify_chain(ctx.db, expect_head=expect_head)
