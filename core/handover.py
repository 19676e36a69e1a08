"""Encrypted hand-over: the new secrets of a run, as a CSV inside an age envelope, one per recipient with a key.

Mail stays free of secrets by default. An operator may register an age recipient (an X25519 `age1...` key, or
an `ssh-ed25519` public key as age allows); a task that opts in with send_secrets gets, for each of its report
recipients with a key, the report plus `<task>-<execution>.csv.age` encrypted to that key only. Recipients
without a key get the counts, as before. The age format is pyrage's (rage), never ours.
"""

from __future__ import annotations

import csv
import io
import re

import pyrage

from core.context import Context
from core.errors import InputError
from storage import drift as store
from storage import executions as rec
from core.errors import NotFound

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
CSV_HEADER = ("asset", "username", "secret_type", "new_secret", "record_id", "finished_at")


def parse_recipient(text: str) -> pyrage.x25519.Recipient | pyrage.ssh.Recipient:
    """An age recipient from `age1...` or `ssh-ed25519 AAAA... [comment]`; InputError names the field."""
    value = " ".join((text or "").split())
    if value.startswith("age1"):
        try:
            return pyrage.x25519.Recipient.from_str(value)
        except Exception:  # noqa: BLE001 - pyrage raises its own types for any malformed key
            raise InputError("age key: not a valid age X25519 recipient (age1...)", field="age key") from None
    if value.startswith("ssh-ed25519 "):
        try:
            return pyrage.ssh.Recipient.from_str(value)
        except Exception:  # noqa: BLE001
            raise InputError("age key: not a valid ssh-ed25519 public key", field="age key") from None
    raise InputError("age key: give an age X25519 recipient (age1...) or an ssh-ed25519 public key line", field="age key")


def set_age_key(ctx: Context, operator_name: str, public_key: str | None) -> None:
    """Register (None: remove) an operator's age recipient; validated and audited in one transaction."""
    from core.audit import record_event_in

    value = None
    if public_key is not None:
        parse_recipient(public_key)
        value = " ".join(public_key.split())
    with ctx.db.write() as s:
        try:
            op_id = store.set_age_key_in(s, operator_name, value)
        except NotFound:
            raise InputError(f"operator: no operator named {operator_name!r}", field="operator") from None
        kind = "none" if value is None else ("x25519" if value.startswith("age1") else "ssh-ed25519")
        record_event_in(s, ctx, "operator.age-key-set" if value else "operator.age-key-clear", "operator", op_id,
                        {"name": operator_name, "key_kind": kind})


def secrets_csv(ctx: Context, execution_id: int) -> bytes:
    """CSV of the new secrets of the execution's successful records (plaintext: encrypt before it leaves)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in sorted(rec.list_records(ctx.db, execution_id=execution_id), key=lambda r: (r.asset_name, r.username)):
        if r.status != rec.SUCCESS:
            continue
        new = rec.record_secrets_full(ctx.db, r.id).new or ""
        writer.writerow((r.asset_name, r.username, r.secret_type, new, r.id,
                         r.finished_at.isoformat() if r.finished_at else ""))
    return out.getvalue().encode()


def encrypt_to(public_key: str, data: bytes) -> bytes:
    """data in an age envelope (binary format) that only public_key's identity opens."""
    return pyrage.encrypt(data, [parse_recipient(public_key)])


def attachment_name(task_name: str, execution_id: int) -> str:
    """A file name safe in any mail client."""
    return f"{_SAFE_NAME.sub('_', task_name).strip('_') or 'task'}-{execution_id}.csv.age"


def plan(ctx: Context, task_id: int | None, recipient_names: list[str]) -> dict[str, str]:
    """Recipient name -> age key for a task that opted in (empty when it did not)."""
    if task_id is None or not store.get_task_options(ctx.db, task_id).send_secrets:
        return {}
    return store.age_keys(ctx.db, recipient_names)
