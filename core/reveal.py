"""Showing secrets: only to a confirmed operator unlocked by a TOTP code, and only after the audit event is written.

Each function decrypts, then writes one `secret.reveal` event per secret in one transaction, and only then
returns the secrets. If that transaction fails the caller gets AuditUnavailable and no secret (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from core.audit import AuditUnavailable, record_event_in
from core.context import Context
from core.errors import AmbiguousAccount, InputError, KeyturnError, NotFound, NothingToReveal, PermissionDenied
from core.mfa import MfaSession
from core.operators import require
from core.scopes import asset_in_scope, asset_visible, record_in_scope, scope_of, task_visible
from storage import operators as store
from storage.inventory import account_secrets

__all__ = ["RevealedSecret", "reveal_account", "reveal_accounts", "reveal_pairs", "reveal_record", "reveal_task"]


@dataclass(frozen=True)
class RevealedSecret:
    """One secret to show: what it belongs to, and the secret itself (never in repr)."""

    label: str
    asset: str
    username: str
    kind: str  # password | ssh_key | passphrase
    object_type: str  # account | change_record
    object_id: int
    which: str  # current | old | new
    secret: str = field(repr=False)


def _gate(ctx: Context, mfa: MfaSession) -> None:
    require(ctx, "reveal")
    if not mfa.unlocked(ctx.operator):
        raise PermissionDenied(f"revealing a secret needs a TOTP code from {ctx.operator or 'an operator'!r} "
                               "(unlock first; an unlock lasts a few minutes)")


def _audited(ctx: Context, items: list[RevealedSecret], extra: dict | None = None) -> list[RevealedSecret]:
    try:
        with ctx.db.write() as s:
            for it in items:
                detail = {"asset": it.asset, "username": it.username, "kind": it.kind, "which": it.which}
                record_event_in(s, ctx, "secret.reveal", it.object_type, it.object_id, {**detail, **(extra or {})})
    except SQLAlchemyError as exc:  # the commit failed after the inserts went in
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        raise AuditUnavailable(f"the audit trail could not be written ({reason}); nothing is revealed") from None
    except AuditUnavailable as exc:
        raise AuditUnavailable(f"{exc}; nothing is revealed") from None
    return items


def _account_items(ctx: Context, ref: store.AccountRef) -> list[RevealedSecret]:
    if not asset_visible(ctx, ref.asset_name):  # outside the acting operator's scope the account is not there
        raise NotFound(f"no account with id {ref.account_id}")
    sec = account_secrets(ctx.db, ref.account_id)
    out = []
    base = f"{ref.asset_name} {ref.username}"
    if sec.secret is not None:
        out.append(RevealedSecret(f"{base} ({ref.secret_type})", ref.asset_name, ref.username, ref.secret_type,
                                  "account", ref.account_id, "current", sec.secret))
    if sec.passphrase is not None:
        out.append(RevealedSecret(f"{base} (key passphrase)", ref.asset_name, ref.username, "passphrase",
                                  "account", ref.account_id, "current", sec.passphrase))
    return out


def check_reason(reason: str) -> str:
    """The reason as kept in the audit event (whitespace folded, at most 500 characters); InputError when empty.

    Every reveal needs one (a ticket id or a sentence), from the app as from `keyturn reveal --reason`.
    """
    from core.textsafe import clean

    reason = " ".join(clean(reason or "").split())[:500]
    if not reason:
        raise InputError("reason: say why this secret is revealed (a ticket id or text); it is kept with the audit event")
    return reason


def _why(reason: str) -> dict:
    # The reason (a ticket id or a sentence) goes into each reveal event; it is text from a person, kept clean.
    return {"reason": check_reason(reason)}


def reveal_accounts(ctx: Context, mfa: MfaSession, account_ids: Iterable[int], *, reason: str = "") -> list[RevealedSecret]:
    """The current secrets of these accounts (skipping ones with none stored), audited before they are returned."""
    check_reason(reason)
    _gate(ctx, mfa)
    items: list[RevealedSecret] = []
    for account_id in account_ids:
        items.extend(_account_items(ctx, store.account_ref_by_id(ctx.db, account_id)))
    if not items:
        raise NothingToReveal("no stored secret to reveal for the accounts named")
    return _audited(ctx, items, _why(reason))


def reveal_account(ctx: Context, mfa: MfaSession, account_id: int, *, reason: str = "") -> list[RevealedSecret]:
    """One account's current secret (and key passphrase, if any)."""
    return reveal_accounts(ctx, mfa, [account_id], reason=reason)


def reveal_pairs(ctx: Context, mfa: MfaSession, pairs: Iterable[tuple[str, str]], *, reason: str = "") -> list[RevealedSecret]:
    """Current secrets of (asset name, username) pairs; a user with both a password and a key gets both."""
    check_reason(reason)
    _gate(ctx, mfa)
    ids: list[int] = []
    for asset, user in pairs:
        ids.extend(_ids_for(ctx, asset, user))
    return reveal_accounts(ctx, mfa, ids, reason=reason)


def _ids_for(ctx: Context, asset: str, user: str) -> list[int]:
    asset_in_scope(ctx, asset)  # outside the scope: "no asset named", as for one that does not exist
    try:
        return [store.account_ref(ctx.db, asset, user).account_id]
    except AmbiguousAccount:
        return [store.account_ref(ctx.db, asset, user, t).account_id for t in ("password", "ssh_key")]


def reveal_record(ctx: Context, mfa: MfaSession, record_id: int, which: str = "new", *, reason: str = "") -> list[RevealedSecret]:
    """The old or new secret of one change record (both stay on the record whatever its status)."""
    if which not in ("old", "new"):
        raise InputError(f"which: expected 'old' or 'new', got {which!r}", field="which")
    check_reason(reason)
    _gate(ctx, mfa)
    record_in_scope(ctx, record_id)  # before anything is decrypted; outside the scope the record is not there
    rec = store.record_secrets(ctx.db, record_id)
    secret = rec.new_secret if which == "new" else rec.old_secret
    passphrase = rec.new_passphrase if which == "new" else rec.old_passphrase
    base = f"{rec.asset_name} {rec.username}"
    items = []
    if secret is not None:
        items.append(RevealedSecret(f"{base} ({which} {rec.secret_type}, record {rec.record_id})", rec.asset_name,
                                    rec.username, rec.secret_type, "change_record", rec.record_id, which, secret))
    if passphrase is not None:
        items.append(RevealedSecret(f"{base} ({which} key passphrase, record {rec.record_id})", rec.asset_name,
                                    rec.username, "passphrase", "change_record", rec.record_id, which, passphrase))
    if not items:
        raise NothingToReveal(f"change record {record_id} holds no {which} secret")
    return _audited(ctx, items, {"task": rec.task_name, "status": rec.status, **_why(reason)})


def reveal_task(ctx: Context, mfa: MfaSession, task_name: str, *, reason: str = "") -> list[RevealedSecret]:
    """Current secrets of every account the task's latest execution worked on."""
    check_reason(reason)
    _gate(ctx, mfa)
    execution_id, refs = _task_accounts(ctx, task_name)
    items: list[RevealedSecret] = []
    for ref in refs:
        items.extend(_account_items(ctx, ref))
    if not items:
        raise NothingToReveal(f"the latest run of task {task_name!r} (execution {execution_id}) left no stored secret")
    return _audited(ctx, items, {"task": task_name, "execution": execution_id, **_why(reason)})


def _task_accounts(ctx: Context, task_name: str) -> tuple[int, list[store.AccountRef]]:
    # A task outside the scope is not there; one reaching outside it is refused whole (no partial reveal).
    execution_id, refs = store.latest_execution_accounts(ctx.db, task_name)
    if scope_of(ctx) is not None:
        from storage.tasks import get_task

        try:
            task_id = get_task(ctx.db, task_name).id
        except NotFound:
            task_id = None
        task_visible(ctx, task_id, task_name)
        outside = [r for r in refs if not asset_visible(ctx, r.asset_name)]
        if outside:
            n = len(outside)
            raise PermissionDenied(f"task {task_name}: {n} account{'s' if n != 1 else ''} of its latest run lie"
                                   f"{'' if n != 1 else 's'} outside your scope; reveal the ones inside one by one "
                                   "(keyturn reveal ASSET USER)")
    if execution_id is None:
        raise KeyturnError(f"task {task_name!r} has not run yet, so it has no accounts to reveal")
    return execution_id, refs


def check_reveal_targets(ctx: Context, *, record: int | None = None, task: str | None = None,
                         pairs: Iterable[tuple[str, str]] = ()) -> None:
    """NotFound for a record, task or account that does not exist, before anyone is asked for a code."""
    if record is not None:
        record_in_scope(ctx, record)
        store.record_secrets(ctx.db, record)
    elif task:
        _task_accounts(ctx, task)
    else:
        for asset, user in pairs:
            asset_in_scope(ctx, asset)
            try:
                store.account_ref(ctx.db, asset, user)
            except AmbiguousAccount:
                pass  # reveal shows both the password and the key
