"""Plain dataclasses that storage hands to core and the UI (no SQLModel rows leave storage/)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Timezone-aware now in UTC (every datetime column holds aware UTC values)."""
    return datetime.now(timezone.utc)


# A change record's states (DESIGN.md: pending -> pushing -> success | failed | unverified).
PENDING = "pending"
PUSHING = "pushing"
SUCCESS = "success"
FAILED = "failed"
UNVERIFIED = "unverified"
# The host verified this record's secret, but the account moved on in the vault meanwhile: both secrets stay
# on the record (DESIGN.md point 6); nothing is written to the account.
SUPERSEDED = "superseded"
RECORD_STATUSES = (PENDING, PUSHING, SUCCESS, FAILED, UNVERIFIED, SUPERSEDED)

HEARTBEAT_STATUSES = ("ok", "rejected", "locked", "unreachable")


@dataclass(frozen=True)
class DependencyStep:
    """After an account on `asset` changes: run `command` as root on `run_on` (default: the same asset)."""

    asset: str
    command: str
    run_on: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"asset": self.asset, "command": self.command, "run_on": self.run_on}

    @classmethod
    def from_dict(cls, data: dict) -> "DependencyStep":
        """Inverse of to_dict."""
        return cls(asset=str(data.get("asset", "")), command=str(data.get("command", "")),
                   run_on=str(data.get("run_on", "") or ""))


@dataclass(frozen=True)
class HeartbeatInfo:
    """One stored heartbeat result."""

    id: int
    account_id: int
    task_id: int | None
    asset_name: str
    username: str
    status: str
    reason: str
    checked_at: datetime


@dataclass(frozen=True)
class HostKeyInfo:
    """A pinned SSH host key."""

    key_type: str
    key_base64: str
    fingerprint: str
    source: str = ""

    @property
    def line(self) -> str:
        """The key as an OpenSSH public key line."""
        return f"{self.key_type} {self.key_base64}"


def fingerprint_sha256(key_base64: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key blob given in base64."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class NodeInfo:
    """A node of the asset tree."""

    id: int
    path: str
    name: str
    parent_id: int | None


@dataclass(frozen=True)
class AssetInfo:
    """An asset with its nodes and pinned host keys."""

    id: int
    name: str
    address: str
    port: int
    platform: str
    active: bool
    comment: str = ""
    nodes: tuple[str, ...] = ()
    host_keys: tuple[HostKeyInfo, ...] = ()
    # Database connection options; empty / None: the platform's default (core/drivers/dbconn.py).
    database: str = ""
    tls: str = ""
    ca_file: str = ""
    connect_timeout: float | None = None
    command_timeout: float | None = None
    gateway_id: int | None = None  # a database reached through this SSH asset (core/drivers/gateway.py)
    gateway: str = ""  # its name


@dataclass(frozen=True)
class AccountInfo:
    """An account without its secret (secrets come only from AccountSecrets)."""

    id: int
    asset_id: int
    asset_name: str
    username: str
    secret_type: str
    privileged: bool
    can_change: bool
    version: int
    last_changed_at: datetime | None
    last_status: str
    has_secret: bool
    has_become: bool = False  # a become (sudo) password is stored (never the password itself)


@dataclass(frozen=True)
class AccountSecrets:
    """The decrypted secrets of one account; handle with care, never log or print."""

    account_id: int
    secret: str | None
    passphrase: str | None = None
    become: str | None = None

    def __repr__(self) -> str:
        return f"AccountSecrets(account_id={self.account_id}, secret=<hidden>)"


@dataclass
class ImportSummary:
    """What an import changed."""

    nodes_created: int = 0
    assets_created: int = 0
    assets_updated: int = 0
    accounts_created: int = 0
    accounts_updated: int = 0
    unchanged: int = 0
    host_keys_pinned: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return any(
            (self.nodes_created, self.assets_created, self.assets_updated, self.accounts_created,
             self.accounts_updated, self.host_keys_pinned)
        )


@dataclass(frozen=True)
class PasswordRules:
    """Rules for random passwords."""

    length: int = 24
    lower: bool = True
    upper: bool = True
    digits: bool = True
    symbols: bool = True
    exclude: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form (stored on the task)."""
        return {"length": self.length, "lower": self.lower, "upper": self.upper, "digits": self.digits,
                "symbols": self.symbols, "exclude": self.exclude}

    @classmethod
    def from_dict(cls, data: dict | None) -> "PasswordRules":
        """Inverse of to_dict; missing keys take defaults."""
        data = data or {}
        return cls(**{k: data[k] for k in ("length", "lower", "upper", "digits", "symbols", "exclude") if k in data})


@dataclass(frozen=True)
class HostParams:
    """Per-task platform parameters (no secrets: the become password is kept in the vault).

    Beyond the host basics: command sequences for custom-ssh (core.drivers.interactive), self-change, and the
    user parameters of linux/unix/aix hosts (core.drivers.posix_users); core.params validates them.
    """

    use_sudo: bool = True
    chpasswd_path: str = "chpasswd"
    create_user: bool = False
    verify: str = "ssh"  # ssh: log in as the account; none: trust the push (ambiguity still probes)
    # custom-ssh command sequences: one command per line, one answer regex per command line.
    commands: str = ""
    answers: str = ""
    prompt: str = ""  # empty: the sequence's (template's) own prompt regex
    recv_timeout: float = 30.0
    delay_time: float = 2.0
    template: str = ""
    settle_delay: float = 0.0  # seconds between a push and its verification (slow devices)
    self_change: bool = False
    # linux/unix/aix: a user created when missing, and its sudoers entry.
    shell: str = ""
    home: str = ""
    group: str = ""
    groups: str = ""  # comma-separated
    uid: int | None = None
    sudo_commands: str = ""  # comma-separated command paths; `sudo` in task parameters
    modify_sudo: bool = False
    # mysql/mariadb: which 'user'@'host' entry to change, or every entry of the user name.
    account_host: str = "%"
    all_hosts: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form (stored on the task)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "HostParams":
        """Inverse of to_dict; missing keys take defaults."""
        data = data or {}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class TaskSpec:
    """A change-secret task as core sees it. Secrets (specific_secret etc.) are plaintext here: never log it."""

    name: str
    usernames: list[str]
    assets: list[str] = field(default_factory=list)  # asset names
    nodes: list[str] = field(default_factory=list)  # node paths
    secret_strategy: str = "random"  # random | specific
    secret_type: str = "password"  # password | ssh_key
    specific_secret: str | None = field(default=None, repr=False)
    specific_passphrase: str | None = field(default=None, repr=False)
    ssh_key_strategy: str = "replace-ours"  # replace-ours | replace-all | append
    key_algorithm: str = "ed25519"  # ed25519 | rsa4096
    rules: PasswordRules = field(default_factory=PasswordRules)
    params: HostParams = field(default_factory=HostParams)
    become_password: str | None = field(default=None, repr=False)
    interval_hours: int | None = None
    cron: str | None = None
    start_at: datetime | None = None
    check_after_change: bool = True
    active: bool = True
    description: str = ""
    recipients: list[str] = field(default_factory=list)
    id: int | None = None
    next_run_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def periodic(self) -> bool:
        """Whether the task has a schedule."""
        return self.interval_hours is not None or bool(self.cron)


@dataclass(frozen=True)
class ExecutionInfo:
    """One run of a task (without its log text unless asked)."""

    id: int
    task_id: int | None
    task_name: str
    trigger: str
    status: str
    operator: str
    started_at: datetime
    finished_at: datetime | None
    total: int
    succeeded: int
    failed: int
    unverified: int
    mail_error: str = ""
    log: str = ""


@dataclass(frozen=True)
class RecordInfo:
    """One account change, without secrets."""

    id: int
    execution_id: int
    task_id: int | None
    task_name: str
    account_id: int | None
    asset_id: int | None
    asset_name: str
    username: str
    secret_type: str
    status: str
    error: str
    attempt: int
    retry_of: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
