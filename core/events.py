"""Structured events of an execution, sent to a callback (the CLI prints them, the TUI streams them).

No event ever carries a secret: only names, statuses and error texts that drivers have scrubbed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core.wording import plural


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Event:
    """Base of every engine event."""

    execution_id: int
    at: datetime = field(default_factory=_now, kw_only=True)

    def text(self) -> str:
        """One log line describing the event."""
        return type(self).__name__


@dataclass(frozen=True)
class ExecutionStarted(Event):
    """A run began."""

    task_name: str
    trigger: str
    total: int
    assets: int

    def text(self) -> str:
        return f"execution {self.execution_id} of {self.task_name} started ({self.trigger}): {plural(self.total, 'account')} on {plural(self.assets, 'asset')}"


@dataclass(frozen=True)
class AssetConnecting(Event):
    """Connecting to an asset with its privileged account."""

    asset: str
    address: str

    def text(self) -> str:
        return f"{self.asset}: connecting to {self.address}"


@dataclass(frozen=True)
class AssetConnected(Event):
    """The privileged connection is up."""

    asset: str

    def text(self) -> str:
        return f"{self.asset}: connected"


@dataclass(frozen=True)
class AssetFailed(Event):
    """The asset could not be worked on; its accounts fail or stay unverified."""

    asset: str
    error: str

    def text(self) -> str:
        return f"{self.asset}: FAILED: {self.error}"


@dataclass(frozen=True)
class AccountPushed(Event):
    """The new secret was applied on the host."""

    asset: str
    username: str
    record_id: int

    def text(self) -> str:
        return f"{self.asset}: {self.username}: pushed"


@dataclass(frozen=True)
class AccountSettled(Event):
    """A record reached a final state: success, failed or unverified."""

    asset: str
    username: str
    record_id: int
    status: str
    error: str = ""

    def text(self) -> str:
        tail = f": {self.error}" if self.error else ""
        return f"{self.asset}: {self.username}: {self.status}{tail}"


@dataclass(frozen=True)
class ExecutionFinished(Event):
    """The run ended, with its counts."""

    status: str
    total: int
    succeeded: int
    failed: int
    unverified: int
    duration_s: float

    def text(self) -> str:
        return (f"execution {self.execution_id} finished: {self.status}; {self.succeeded} succeeded, "
                f"{self.failed} failed, {self.unverified} unverified of {self.total} in {self.duration_s:.1f}s")


EventCallback = Callable[[Event], None]
