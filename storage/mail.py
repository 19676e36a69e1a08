"""What mail reports need from the database: the SMTP password, an execution with its records, recipients."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from storage.db import Database
from storage.executions import execution_info, record_info
from storage.errors import NotFound
from storage.tables import ChangeRecord, ChangeSecretTask, Execution, Operator, VaultItem, utcnow
from storage.types import ExecutionInfo, RecordInfo

SMTP_PASSWORD_ITEM = "smtp.password"


def get_smtp_password(db: Database) -> str | None:
    """The stored SMTP password (decrypted), None when none is stored."""
    with db.read() as s:
        item = s.get(VaultItem, SMTP_PASSWORD_ITEM)
        return db.unseal(item, "value_enc") if item is not None else None


def set_smtp_password(db: Database, password: str | None) -> None:
    """Store (or, with None, forget) the SMTP password in the vault."""
    with db.write() as s:
        set_smtp_password_in(s, db, password)


def set_smtp_password_in(session: Session, db: Database, password: str | None) -> None:
    """set_smtp_password inside an open write session (to commit it with its audit event)."""
    item = session.get(VaultItem, SMTP_PASSWORD_ITEM)
    if password is None:
        if item is not None:
            session.delete(item)
        return
    if item is None:
        item = VaultItem(name=SMTP_PASSWORD_ITEM)
        session.add(item)
    db.seal(item, "value_enc", password)
    item.updated_at = utcnow()


@dataclass(frozen=True)
class Recipient:
    """An operator chosen on a task and the address their reports go to ('' when they have none)."""

    name: str
    email: str
    known: bool = True  # False: no operator of that name exists


@dataclass
class ExecutionReportData:
    """An execution, its records (no secrets) and who should hear about it."""

    execution: ExecutionInfo
    records: list[RecordInfo]
    recipients: list[Recipient]
    secrets: set[str] = field(default_factory=set, repr=False)  # only to scrub the report, never shown
    drifted: list[tuple[str, str, str]] = field(default_factory=list)  # (asset, user, status): last heartbeat not ok
    dependency_warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (asset, user, error)


def execution_report_data(db: Database, execution_id: int) -> ExecutionReportData:
    """Everything a report on one execution needs; raises NotFound for an unknown execution."""
    with db.read() as s:
        run = s.get(Execution, execution_id)
        if run is None:
            raise NotFound(f"execution {execution_id} does not exist")
        rows = s.exec(select(ChangeRecord).where(ChangeRecord.execution_id == execution_id)
                      .order_by(col(ChangeRecord.asset_name), col(ChangeRecord.username), col(ChangeRecord.id))).all()
        # The snapshot holds the recipients the task had when it ran; fall back to the task as it is now.
        names = run.snapshot.get("recipients") if isinstance(run.snapshot, dict) else None
        if names is None and run.task_id is not None:
            task = s.get(ChangeSecretTask, run.task_id)
            names = task.recipients if task is not None else []
        recipients = []
        for name in dict.fromkeys(names or []):
            op = s.exec(select(Operator).where(Operator.name == name)).first()
            recipients.append(Recipient(name=name, email=(op.email or "").strip() if op else "", known=op is not None))
        secrets: set[str] = set()
        for row in rows:
            for column in ("old_secret_enc", "old_passphrase_enc", "new_secret_enc", "new_passphrase_enc"):
                value = db.unseal(row, column)
                if value:
                    secrets.add(value)
    drifted = []
    if run.task_id is not None:
        from storage.drift import latest_heartbeats

        drifted = [(h.asset_name, h.username, h.status) for h in latest_heartbeats(db)
                   if h.task_id == run.task_id and h.status != "ok"]
    from storage.drift import record_flags

    flags = record_flags(db, [r.id for r in rows])
    warnings = [(r.asset_name, r.username, flags[r.id].dependency_error) for r in rows
                if flags[r.id].dependency_status == "failed"]
    return ExecutionReportData(execution=execution_info(run), records=[record_info(r) for r in rows],
                               recipients=recipients, secrets=secrets, drifted=drifted, dependency_warnings=warnings)


def set_mail_error(db: Database, execution_id: int, error: str) -> None:
    """Record why the report of an execution could not be delivered ('' clears it)."""
    with db.write() as s:
        run = s.get(Execution, execution_id)
        if run is not None:
            run.mail_error = error
