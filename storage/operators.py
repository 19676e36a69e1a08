"""Repository for operators (people with a TOTP secret) and the look-ups the reveal view needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from storage.db import Database
from storage.inventory import NotFound
from storage.tables import Account, Asset, ChangeRecord, ChangeSecretTask, Execution, Operator


@dataclass(frozen=True)
class OperatorInfo:
    """An operator without the TOTP secret."""

    id: int
    name: str
    email: str
    confirmed: bool
    failed_attempts: int
    locked_until: datetime | None
    last_totp_step: int | None
    created_at: datetime
    has_secret: bool


@dataclass
class MfaState:
    """What a code check reads and updates, in one write transaction. Holds the decrypted TOTP secret."""

    name: str
    confirmed: bool
    secret: str | None = field(repr=False)
    last_totp_step: int | None
    failed_attempts: int
    locked_until: datetime | None


def _info(row: Operator) -> OperatorInfo:
    return OperatorInfo(row.id or 0, row.name, row.email, row.confirmed, row.failed_attempts, row.locked_until,
                        row.last_totp_step, row.created_at, row.totp_secret_enc is not None)


def _row(session: Session, name: str) -> Operator:
    row = session.exec(select(Operator).where(Operator.name == name)).first()
    if row is None:
        raise NotFound(f"no operator named {name!r}")
    return row


def operator_exists(session: Session, name: str) -> bool:
    """Whether an operator with this name exists."""
    return session.exec(select(Operator.id).where(Operator.name == name)).first() is not None


def get_operator(db: Database, name: str) -> OperatorInfo:
    """One operator by name, or NotFound."""
    with db.read() as s:
        return _info(_row(s, name))


def find_operator(db: Database, name: str) -> OperatorInfo | None:
    """One operator by name, or None."""
    with db.read() as s:
        row = s.exec(select(Operator).where(Operator.name == name)).first()
        return _info(row) if row else None


def list_operators(db: Database) -> list[OperatorInfo]:
    """All operators by name."""
    with db.read() as s:
        return [_info(r) for r in s.exec(select(Operator).order_by(Operator.name)).all()]


def confirmed_count(db: Database) -> int:
    """How many operators have confirmed their TOTP enrolment."""
    with db.read() as s:
        return len(s.exec(select(Operator.id).where(Operator.confirmed == True)).all())  # noqa: E712


def add_operator(session: Session, name: str, email: str) -> OperatorInfo:
    """Create an unconfirmed operator without a TOTP secret (the person enrols their own)."""
    row = Operator(name=name, email=email)
    session.add(row)
    session.flush()
    return _info(row)


def clear_totp_secret(session: Session, name: str) -> OperatorInfo:
    """Drop an operator's TOTP secret: unconfirmed, with no code that works, until they enrol again."""
    row = _row(session, name)
    row.totp_secret_enc = None
    row.confirmed = False
    row.last_totp_step = None
    row.failed_attempts = 0
    row.locked_until = None
    session.add(row)
    session.flush()
    return _info(row)


def set_totp_secret(db: Database, session: Session, name: str, totp_secret: str) -> OperatorInfo:
    """Replace an operator's TOTP secret; the operator is unconfirmed until a code from the new one is given."""
    row = _row(session, name)
    db.seal(row, "totp_secret_enc", totp_secret)
    row.confirmed = False
    row.last_totp_step = None
    row.failed_attempts = 0
    row.locked_until = None
    session.add(row)
    session.flush()
    return _info(row)


def set_email(session: Session, name: str, email: str) -> OperatorInfo:
    """Change an operator's email address."""
    row = _row(session, name)
    row.email = email
    session.add(row)
    session.flush()
    return _info(row)


def remove_operator(session: Session, name: str) -> OperatorInfo:
    """Delete an operator; returns what was deleted."""
    row = _row(session, name)
    info = _info(row)
    session.delete(row)
    session.flush()
    return info


def load_mfa_state(db: Database, session: Session, name: str) -> MfaState:
    """The operator's code-check state with the decrypted secret (call inside db.write()).

    The row stays locked (FOR UPDATE) until the check commits, so two processes checking codes at once
    take turns on PostgreSQL too: a time step is accepted once and every failure is counted.
    """
    row = session.exec(select(Operator).where(Operator.name == name).with_for_update()).first()
    if row is None:
        raise NotFound(f"no operator named {name!r}")
    return MfaState(row.name, row.confirmed, db.unseal(row, "totp_secret_enc"), row.last_totp_step,
                    row.failed_attempts, row.locked_until)


def save_mfa_state(session: Session, state: MfaState) -> None:
    """Store the counters of a code check (never the secret: that only changes via set_totp_secret)."""
    row = _row(session, state.name)
    row.confirmed = state.confirmed
    row.last_totp_step = state.last_totp_step
    row.failed_attempts = state.failed_attempts
    row.locked_until = state.locked_until
    session.add(row)
    session.flush()


# -- look-ups for the reveal view ------------------------------------------------------------------
@dataclass(frozen=True)
class AccountRef:
    """Which account a secret belongs to (no secret)."""

    account_id: int
    asset_name: str
    username: str
    secret_type: str


@dataclass(frozen=True)
class RecordSecrets:
    """One change record's secrets, decrypted; handle with care, never log or print."""

    record_id: int
    task_name: str
    asset_name: str
    username: str
    secret_type: str
    status: str
    old_secret: str | None = field(repr=False)
    old_passphrase: str | None = field(repr=False)
    new_secret: str | None = field(repr=False)
    new_passphrase: str | None = field(repr=False)


def account_ref(db: Database, asset_name: str, username: str, secret_type: str | None = None) -> AccountRef:
    """The account (asset, user[, type]) names, or NotFound."""
    from storage.inventory import get_account_row

    with db.read() as s:
        acc = get_account_row(s, asset_name, username, secret_type)
        return AccountRef(acc.id or 0, asset_name, acc.username, acc.secret_type)


def account_ref_by_id(db: Database, account_id: int) -> AccountRef:
    """The account with this id, or NotFound."""
    with db.read() as s:
        row = s.exec(select(Account, Asset.name).join(Asset, Asset.id == Account.asset_id)
                     .where(Account.id == account_id)).first()
        if row is None:
            raise NotFound(f"no account with id {account_id}")
        acc, asset_name = row
        return AccountRef(acc.id or 0, asset_name, acc.username, acc.secret_type)


def record_secrets(db: Database, record_id: int) -> RecordSecrets:
    """Decrypt one change record's old and new secrets (reveal view only)."""
    with db.read() as s:
        rec = s.get(ChangeRecord, record_id)
        if rec is None:
            raise NotFound(f"no change record with id {record_id}")
        return RecordSecrets(
            rec.id or 0, rec.task_name, rec.asset_name, rec.username, rec.secret_type, rec.status,
            db.unseal(rec, "old_secret_enc"), db.unseal(rec, "old_passphrase_enc"),
            db.unseal(rec, "new_secret_enc"), db.unseal(rec, "new_passphrase_enc"),
        )


def latest_execution_accounts(db: Database, task_name: str) -> tuple[int | None, list[AccountRef]]:
    """The task's latest execution id and the accounts it targeted that still exist; NotFound for no task."""
    with db.read() as s:
        task = s.exec(select(ChangeSecretTask).where(ChangeSecretTask.name == task_name)).first()
        stmt = select(Execution.id).order_by(col(Execution.started_at).desc(), col(Execution.id).desc()).limit(1)
        if task is not None:
            stmt = stmt.where((Execution.task_id == task.id) | (Execution.task_name == task_name))
        else:
            stmt = stmt.where(Execution.task_name == task_name)
        execution_id = s.exec(stmt).first()
        if task is None and execution_id is None:
            raise NotFound(f"no task named {task_name!r}")
        if execution_id is None:
            return None, []
        rows = s.exec(
            select(Account, Asset.name).join(ChangeRecord, ChangeRecord.account_id == Account.id)
            .join(Asset, Asset.id == Account.asset_id).where(ChangeRecord.execution_id == execution_id)
            .order_by(Asset.name, Account.username)
        ).all()
        seen: set[int] = set()
        refs: list[AccountRef] = []
        for acc, asset_name in rows:
            if acc.id in seen:  # a retried record names the same account twice
                continue
            seen.add(acc.id or 0)
            refs.append(AccountRef(acc.id or 0, asset_name, acc.username, acc.secret_type))
        return execution_id, refs
