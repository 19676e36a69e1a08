"""Master key use cases: rotate the key every vault value is sealed under."""

from __future__ import annotations

from pathlib import Path

from core.audit import record_event
from core.context import Context
from core.errors import KeyturnError
from core.stepup import require_step_up


def rotate_master_key(ctx: Context) -> tuple[int, Path]:
    """Re-seal every secret under a fresh master key; (values re-sealed, where the old key was kept).

    Audited as key.rotate once the new key is in use (the rotation spans the key files and the database, so
    the event cannot share its transaction; a refused rotation leaves no event)."""
    from storage.keyrotate import RunInProgress, rotate_master_key as rotate

    require_step_up(ctx, ctx.mfa, "key.rotate")
    try:
        count, retired = rotate(ctx.db, ctx.home)
    except RunInProgress as exc:
        raise KeyturnError(str(exc)) from None
    record_event(ctx, "key.rotate", "vault", "master.key", {"values": count})
    return count, retired
