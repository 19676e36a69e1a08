"""SQLModel tables for every keyturn entity; rows never leave storage/ (repositories hand out dataclasses).

Columns ending in `_enc` hold vault ciphertexts bound to (table, row id, column); ENCRYPTED_COLUMNS lists
them all, so key rotation and the plaintext-dump test cannot miss one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# ENCRYPTED_COLUMNS ((table, primary-key column, encrypted columns)) lives in storage.schema for the ORM-free
# reader; importers take it from here as before.
from storage.schema import ENCRYPTED_COLUMNS as ENCRYPTED_COLUMNS
from storage.types import utcnow as utcnow  # defined without the ORM, for readers that need no tables


def _blob() -> Any:
    return Field(default=None, sa_column=Column(LargeBinary, nullable=True))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class Node(SQLModel, table=True):
    """A group in the asset tree, identified by its path such as /prod/db."""

    __tablename__ = "node"
    id: Optional[int] = Field(default=None, primary_key=True)
    path: str = Field(index=True, unique=True)
    name: str
    parent_id: Optional[int] = Field(default=None, foreign_key="node.id", index=True)


class AssetNode(SQLModel, table=True):
    """Which nodes an asset belongs to."""

    __tablename__ = "asset_node"
    asset_id: int = Field(foreign_key="asset.id", primary_key=True, ondelete="CASCADE")
    node_id: int = Field(foreign_key="node.id", primary_key=True, ondelete="CASCADE", index=True)


class Asset(SQLModel, table=True):
    """A host or database that holds accounts."""

    __tablename__ = "asset"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    address: str
    port: int = 22
    platform: str = "linux"
    active: bool = True
    comment: str = ""
    # Database connection options (core/drivers/dbconn.py); empty or None means the platform's default.
    database: str = ""
    tls: str = ""  # disable | require | verify-full
    ca_file: str = ""
    connect_timeout: Optional[float] = None
    command_timeout: Optional[float] = None
    # A database reached through an SSH tunnel: the gateway asset's id (core/drivers/gateway.py).
    gateway_asset_id: Optional[int] = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class HostKey(SQLModel, table=True):
    """A pinned SSH host key of an asset (OpenSSH public key text)."""

    __tablename__ = "host_key"
    __table_args__ = (UniqueConstraint("asset_id", "key_type", "key_base64"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    key_type: str
    key_base64: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint: str
    source: str = ""
    added_at: datetime = Field(default_factory=utcnow)


class Account(SQLModel, table=True):
    """One account on one asset, with its current secret in the vault."""

    __tablename__ = "account"
    __table_args__ = (UniqueConstraint("asset_id", "username", "secret_type"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True, ondelete="CASCADE")
    username: str = Field(index=True)
    secret_type: str = "password"  # password | ssh_key
    secret_enc: Optional[bytes] = _blob()
    passphrase_enc: Optional[bytes] = _blob()  # of an encrypted private key
    become_secret_enc: Optional[bytes] = _blob()  # sudo password (ansible_become_password)
    privileged: bool = False
    can_change: bool = True
    version: int = 0
    last_changed_at: Optional[datetime] = None
    last_status: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    # The change record that holds this account's claim (DESIGN.md point 6); live while that record is
    # pending or pushing, or unverified before its deadline. Not a foreign key: records outlive nothing here.
    claimed_by: Optional[int] = None


class AccountSecretHistory(SQLModel, table=True):
    """A secret an account held before it was replaced; never deleted by rotation."""

    __tablename__ = "account_secret_history"
    id: Optional[int] = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    version: int
    secret_enc: Optional[bytes] = _blob()
    passphrase_enc: Optional[bytes] = _blob()
    valid_from: Optional[datetime] = None
    replaced_at: datetime = Field(default_factory=utcnow)
    record_id: Optional[int] = Field(default=None, foreign_key="change_record.id")


class ChangeSecretTask(SQLModel, table=True):
    """A change-secret task: which accounts, how the new secret is made, and when it runs."""

    __tablename__ = "change_secret_task"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    usernames: list = _json(list)
    secret_strategy: str = "random"  # random | specific
    secret_type: str = "password"  # password | ssh_key
    specific_secret_enc: Optional[bytes] = _blob()
    specific_passphrase_enc: Optional[bytes] = _blob()
    ssh_key_strategy: str = "replace-ours"  # replace-ours | replace-all | append
    key_algorithm: str = "ed25519"  # ed25519 | rsa4096
    rules: dict = _json(dict)  # length, lower, upper, digits, symbols, exclude
    params: dict = _json(dict)  # per-platform host parameters (no secrets)
    become_password_enc: Optional[bytes] = _blob()
    interval_hours: Optional[int] = None
    cron: Optional[str] = None
    start_at: Optional[datetime] = None
    next_run_at: Optional[datetime] = Field(default=None, index=True)
    check_after_change: bool = True
    active: bool = True
    recipients: list = _json(list)  # operator names
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TaskAsset(SQLModel, table=True):
    """Assets chosen directly on a task."""

    __tablename__ = "task_asset"
    task_id: int = Field(foreign_key="change_secret_task.id", primary_key=True, ondelete="CASCADE")
    asset_id: int = Field(foreign_key="asset.id", primary_key=True, ondelete="CASCADE")


class TaskNode(SQLModel, table=True):
    """Nodes chosen on a task (all assets below them are covered)."""

    __tablename__ = "task_node"
    task_id: int = Field(foreign_key="change_secret_task.id", primary_key=True, ondelete="CASCADE")
    node_id: int = Field(foreign_key="node.id", primary_key=True, ondelete="CASCADE")


class Execution(SQLModel, table=True):
    """One run of a task, with a frozen snapshot of it and its log (never a secret)."""

    __tablename__ = "execution"
    __table_args__ = (Index("ix_execution_started", "started_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    task_id: Optional[int] = Field(default=None, foreign_key="change_secret_task.id", index=True, ondelete="SET NULL")
    task_name: str
    trigger: str  # manual | schedule | retry | cli
    status: str = "running"  # running | success | partial | failed | cancelled | interrupted
    operator: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None
    snapshot: dict = _json(dict)
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    unverified: int = 0
    log: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    mail_error: str = ""
    pid: Optional[int] = None
    hostname: str = ""


class ChangeRecord(SQLModel, table=True):
    """One account's change in one execution: old and new secret, status and error.

    status: pending -> pushing -> success | failed | unverified | superseded (DESIGN.md's state machine).
    """

    __tablename__ = "change_record"
    __table_args__ = (
        Index("ix_record_status_created", "status", "created_at"),
        Index("ix_record_task_created", "task_id", "created_at"),
        Index("ix_record_execution_finished", "execution_id", "finished_at"),  # following a run (0007)
        Index("ix_record_created", "created_at"),  # the Records mode's newest-first pages (0008)
        Index("ix_record_task_name_created", "task_name", "created_at"),  # Records filtered by task (0009)
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    execution_id: int = Field(foreign_key="execution.id", index=True)
    task_id: Optional[int] = Field(default=None, foreign_key="change_secret_task.id", ondelete="SET NULL")
    account_id: Optional[int] = Field(default=None, foreign_key="account.id", index=True, ondelete="SET NULL")
    asset_id: Optional[int] = Field(default=None, foreign_key="asset.id", ondelete="SET NULL")
    task_name: str = ""
    asset_name: str = ""
    username: str = ""
    secret_type: str = "password"
    old_secret_enc: Optional[bytes] = _blob()
    old_passphrase_enc: Optional[bytes] = _blob()
    new_secret_enc: Optional[bytes] = _blob()
    new_passphrase_enc: Optional[bytes] = _blob()
    status: str = "pending"
    error: str = ""
    attempt: int = 1
    retry_of: Optional[int] = Field(default=None, foreign_key="change_record.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    # When the host has certainly stopped running this record's change (the remote command runs under a
    # deadline it enforces itself); reconcile does not judge the record before then.
    deadline_at: Optional[datetime] = None
    # The account's version when the record was created: a settle into a moved account is `superseded`.
    start_version: Optional[int] = None


class Operator(SQLModel, table=True):
    """A person who may run tasks and, after a TOTP check, see secrets."""

    __tablename__ = "operator"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    email: str = ""
    totp_secret_enc: Optional[bytes] = _blob()
    confirmed: bool = False
    last_totp_step: Optional[int] = None
    failed_attempts: int = 0
    locked_until: Optional[datetime] = None
    created_at: datetime = Field(default_factory=utcnow)


class OperatorScope(SQLModel, table=True):
    """A node subtree an operator is limited to; an operator without any row sees everything."""

    __tablename__ = "operator_scope"
    operator_id: int = Field(foreign_key="operator.id", primary_key=True, ondelete="CASCADE")
    node_id: int = Field(foreign_key="node.id", primary_key=True, ondelete="CASCADE", index=True)


class AuditEvent(SQLModel, table=True):
    """Who did what to which object; each event carries the hash of the one before it."""

    __tablename__ = "audit_event"
    id: Optional[int] = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow, index=True)
    actor: str = ""
    action: str
    object_type: str = ""
    object_id: str = ""
    detail: dict = _json(dict)
    source: str = ""
    prev_hash: str = ""
    hash: str = Field(index=True)


class TaskLock(SQLModel, table=True):
    """A held run of a task, so two processes (TUI, CLI, schedulers) never run one task at once."""

    __tablename__ = "task_lock"
    task_id: int = Field(foreign_key="change_secret_task.id", primary_key=True, ondelete="CASCADE")
    holder: str
    acquired_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class VaultItem(SQLModel, table=True):
    """Named secrets that belong to no row (the SMTP password, the key check value)."""

    __tablename__ = "vault_item"
    name: str = Field(primary_key=True)
    value_enc: Optional[bytes] = _blob()
    updated_at: datetime = Field(default_factory=utcnow)


# What else each encrypted value is bound to (storage/vault.py): an account secret to its asset, user, type
# and version (an older ciphertext of the same account no longer opens), history to its account and version,
# a record's secrets to the asset name, user and type it was made for (asset and account ids of a record are
# cleared when those are deleted, the names stay). Columns not listed are bound to table, row and field only.
_ACCOUNT = ("asset_id", "username", "secret_type", "version")
_RECORD = ("asset_name", "username", "secret_type")
BINDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "account": {"secret_enc": _ACCOUNT, "passphrase_enc": _ACCOUNT,
                # the sudo password is not rotated with the account, so it is not bound to the version
                "become_secret_enc": ("asset_id", "username", "secret_type")},
    "account_secret_history": {"secret_enc": ("account_id", "version"), "passphrase_enc": ("account_id", "version")},
    "change_record": {c: _RECORD for c in ("old_secret_enc", "old_passphrase_enc", "new_secret_enc", "new_passphrase_enc")},
}


def binding_columns(table: str, column: str) -> tuple[str, ...]:
    """The columns a value in table.column is bound to besides its row and field."""
    return BINDINGS.get(table, {}).get(column, ())


# -- drift, windows, dependencies, hand-over (issue 16): new tables only, so the older ones stay as they are --
class TaskOption(SQLModel, table=True):
    """A task's heartbeat schedule, change windows, retries, dependency steps and hand-over choice."""

    __tablename__ = "task_option"
    task_id: int = Field(foreign_key="change_secret_task.id", primary_key=True, ondelete="CASCADE")
    heartbeat_interval_hours: Optional[int] = None
    heartbeat_cron: Optional[str] = None
    next_heartbeat_at: Optional[datetime] = None
    windows: list = _json(list)  # window texts such as "Mon-Fri 01:00-05:00 Europe/Berlin"
    retries: int = 0
    retry_delay_minutes: int = 0
    send_secrets: bool = False
    reconcile_drift: bool = False  # a heartbeat's rejected accounts get a new secret through the privileged account
    dependencies: list = _json(list)  # {"asset": name, "run_on": name or "", "command": text}


class HeartbeatResult(SQLModel, table=True):
    """One login check of an account with the vault's current secret: ok | rejected | locked | unreachable."""

    __tablename__ = "heartbeat_result"
    __table_args__ = (Index("ix_heartbeat_account_checked", "account_id", "checked_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    task_id: Optional[int] = Field(default=None, foreign_key="change_secret_task.id", ondelete="SET NULL")
    asset_name: str = ""
    username: str = ""
    account_version: int = 0
    status: str
    reason: str = ""
    checked_at: datetime = Field(default_factory=utcnow, index=True)


class RecordFlag(SQLModel, table=True):
    """What happened to a record after it settled: ignored by an operator, dependency steps' outcome."""

    __tablename__ = "record_flag"
    record_id: int = Field(foreign_key="change_record.id", primary_key=True, ondelete="CASCADE")
    ignored: bool = False
    ignored_by: str = ""
    ignored_at: Optional[datetime] = None
    dependency_status: str = ""  # "" (none) | ok | failed
    dependency_error: str = ""


class OperatorAgeKey(SQLModel, table=True):
    """An operator's age recipient (X25519 `age1...` or an ssh-ed25519 public key) for the hand-over."""

    __tablename__ = "operator_age_key"
    operator_id: int = Field(foreign_key="operator.id", primary_key=True, ondelete="CASCADE")
    public_key: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


# -- workers (issue 15): a running execution split into work units that `keyturn worker` processes take --
class WorkRun(SQLModel, table=True):
    """An execution handed to the workers: who holds its task lock, and whether it was finished or cancelled."""

    __tablename__ = "work_run"
    execution_id: int = Field(foreign_key="execution.id", primary_key=True, ondelete="CASCADE")
    task_id: Optional[int] = Field(default=None, foreign_key="change_secret_task.id", ondelete="SET NULL")
    lock_holder: str  # the task lock's holder while workers run it ("workers:exec-<id>"), renewed by them
    cancel_requested: bool = False  # set by the person who queued it: no account not yet pushed is started
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None  # set once, by the worker that finished the last unit


class WorkUnit(SQLModel, table=True):
    """One asset of a queued execution with the records of its accounts, taken by one worker under a lease.

    status: queued -> running (worker, lease_until renewed by it) -> done. A running unit whose lease expired
    is taken again by another worker (attempt + 1), which first settles the records its holder left open.
    """

    __tablename__ = "work_unit"
    __table_args__ = (Index("ix_work_unit_status", "status", "lease_until"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    execution_id: int = Field(foreign_key="execution.id", index=True, ondelete="CASCADE")
    asset_id: Optional[int] = Field(default=None, foreign_key="asset.id", ondelete="SET NULL")
    asset_name: str = ""
    record_ids: list = _json(list)
    status: str = "queued"
    worker: str = ""
    attempt: int = 0  # how many times the unit was taken; a lease renewal or finish names it (a fencing token)
    lease_until: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
