"""What an operator may do to a settled record (JumpServer's record actions): ignore, unignore, verify, restore.

- ignore / unignore: a failed or unverified record leaves (or rejoins) the needs-attention list; audited,
  reversible, nothing on any host or in the vault changes.
- verify: log in now with the record's new, then old secret. An unverified record is settled by it (as a
  reconcile would); a failed one is only reported (the host and the vault already agree on the old secret,
  unless the new one works, which restore can then fix).
- restore: make the record's new secret the account's current one, after a TOTP check and a fresh login
  proving the host accepts it; refused when the account changed since the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.audit import record_event, record_event_in
from core.context import Context
from core.drivers.base import Verify, verify_key, verify_password
from core.errors import InputError, KeyturnError, PermissionDenied
from core.mfa import MfaSession
from core.operators import require
from core.ssh import Timeouts
from storage import drift as store
from storage import executions as rec
from core.errors import NotFound
from storage.inventory import get_asset_by_id
from storage.types import RecordInfo

ATTENTION = (rec.FAILED, rec.UNVERIFIED)


@dataclass(frozen=True)
class VerifyOutcome:
    """What a login with a record's secrets found now: new/old each ok | rejected | unknown, and the status after."""

    record_id: int
    new: str
    old: str
    status: str
    note: str = ""


def _records(ctx: Context, ids: Iterable[int]) -> list[RecordInfo]:
    out = []
    for rid in dict.fromkeys(ids):
        try:
            out.append(rec.get_record(ctx.db, rid))
        except NotFound:
            raise InputError(f"record {rid}: no such change record") from None
    if not out:
        raise InputError("records: give at least one record id")
    # An operator limited to node subtrees acts on no record of an asset outside them (ignore, verify, restore):
    # for them such a record does not exist, so the answer is the one for a missing record.
    from core.scopes import scope_of

    allowed = scope_of(ctx)
    for r in out:
        if allowed is not None and r.asset_id not in allowed:
            raise InputError(f"record {r.id}: no such change record")
    return out


def _visible(ctx: Context, asset_id: int) -> bool:
    from core.scopes import scope_of

    allowed = scope_of(ctx)
    return allowed is None or asset_id in allowed


def set_ignored(ctx: Context, record_ids: Iterable[int], ignored: bool) -> list[int]:
    """Ignore (or unignore) failed/unverified records, all or none, with one audit event each; returns the ids."""
    require(ctx, "edit")
    records = _records(ctx, record_ids)
    for r in records:
        if r.status not in ATTENTION:
            raise InputError(f"record {r.id}: is {r.status}; only failed or unverified records can be ignored")
    with ctx.db.write() as s:
        for r in records:
            store.set_ignored_in(s, r.id, ignored, ctx.operator or "")
            record_event_in(s, ctx, "record.ignore" if ignored else "record.unignore", "change_record", r.id,
                            {"task": r.task_name, "asset": r.asset_name, "username": r.username, "status": r.status})
    return [r.id for r in records]


def needs_attention(ctx: Context, task: str | None = None) -> list[RecordInfo]:
    """Failed and unverified records not retried since and not ignored (the Overview's list)."""
    from core.scopes import scope_filter

    ignored = store.ignored_record_ids(ctx.db)
    out = []
    for status in ATTENTION:
        for r in rec.list_records(ctx.db, task=task, status=status, scope=scope_filter(ctx)):
            if r.id not in ignored and rec.retried_as(ctx.db, r.id) is None:
                out.append(r)
    return sorted(out, key=lambda r: r.id, reverse=True)


def _login(ctx: Context, r: RecordInfo, secret: str | None, passphrase: str | None, timeouts: Timeouts) -> Verify:
    asset = get_asset_by_id(ctx.db, r.asset_id)  # type: ignore[arg-type]
    if r.secret_type == "ssh_key":
        return verify_key(asset, r.username, secret, passphrase, timeouts)
    return verify_password(asset, r.username, secret, timeouts)


def verify_record(ctx: Context, record_id: int) -> VerifyOutcome:
    """Log in with a failed or unverified record's new, then old secret; settle it when it was unverified."""
    require(ctx, "run")
    [r] = _records(ctx, [record_id])
    if r.status not in ATTENTION:
        raise InputError(f"record {r.id}: is {r.status}; only failed or unverified records can be verified")
    if r.account_id is None or r.asset_id is None:
        raise InputError(f"record {r.id}: its account or asset was removed from the inventory")
    timeouts = Timeouts.from_settings(ctx.settings)
    full = rec.record_secrets_full(ctx.db, r.id)
    v_new = _login(ctx, r, full.new, full.new_passphrase, timeouts)
    v_old = _login(ctx, r, full.old, full.old_passphrase, timeouts) if not v_new.ok else Verify(Verify.UNKNOWN_STATUS, "not tried")
    status, note = r.status, ""
    if r.status == rec.UNVERIFIED:
        if v_new.ok:
            status = rec.SUCCESS
        elif v_new.rejected and v_old.ok:
            status, note = rec.FAILED, "host kept the old secret (verified on demand)"
        if status != r.status:
            rec.settle(ctx.db, r.id, status, note)
    elif v_new.ok:
        note = "the host accepts the record's new secret: restore it to make it current"
    record_event(ctx, "record.verify", "change_record", r.id,
                 {"new": v_new.status, "old": v_old.status, "before": r.status, "after": status})
    return VerifyOutcome(r.id, v_new.status, v_old.status, status, note)


def restore_record(ctx: Context, mfa: MfaSession, record_id: int) -> None:
    """Make a record's new secret the account's current one (TOTP-gated; refused when the account changed since)."""
    require(ctx, "reveal")
    if not mfa.unlocked(ctx.operator):
        raise PermissionDenied(f"restoring a secret needs a TOTP code from {ctx.operator or 'an operator'!r}")
    [r] = _records(ctx, [record_id])
    if r.status in (rec.PENDING, rec.PUSHING):
        raise InputError(f"record {r.id}: is still {r.status}; let the run or a reconcile settle it first")
    if r.account_id is None or r.asset_id is None:
        raise InputError(f"record {r.id}: its account or asset was removed from the inventory")
    full = rec.record_secrets_full(ctx.db, r.id)
    from storage.inventory import account_secrets

    if account_secrets(ctx.db, r.account_id).secret == full.new:
        raise InputError(f"record {r.id}: its new secret is already the account's current one")
    # Only a secret the host accepts right now may become current: never point the vault at a dead secret.
    v_new = _login(ctx, r, full.new, full.new_passphrase, Timeouts.from_settings(ctx.settings))
    if not v_new.ok:
        why = "rejects it" if v_new.rejected else f"could not be asked ({v_new.reason})"
        raise KeyturnError(f"record {r.id}: not restored: the host {why}; the vault keeps its current secret")
    try:
        with ctx.db.write() as s:
            store.restore_record_secret_in(s, ctx.db, r.id)
            record_event_in(s, ctx, "record.restore", "change_record", r.id,
                            {"task": r.task_name, "asset": r.asset_name, "username": r.username})
    except store.RestoreRefused as exc:
        raise InputError(str(exc)) from None
