"""Plain dataclasses that storage hands to core and the UI (no SQLModel rows leave storage/)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime


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
