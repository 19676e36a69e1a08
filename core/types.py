"""The plain data keyturn's use cases take and return, for front ends (which never import storage).

Storage defines these dataclasses (it fills them from its rows); core hands them on unchanged.
"""

from __future__ import annotations

# Only storage.types: it needs no ORM, so a front end can import this module without loading SQLAlchemy.
from storage.types import (
    FAILED, HEARTBEAT_STATUSES, PENDING, PUSHING, RECORD_STATUSES, SUCCESS, SUPERSEDED, UNVERIFIED, AccountInfo,
    AssetInfo, DependencyStep, ExecutionInfo, HeartbeatInfo, HostKeyInfo, HostParams, ImportSummary, NodeInfo,
    PasswordRules, RecordInfo, TaskSpec, fingerprint_sha256, utcnow,
)

__all__ = ["FAILED", "PENDING", "PUSHING", "RECORD_STATUSES", "SUCCESS", "SUPERSEDED", "UNVERIFIED", "HEARTBEAT_STATUSES", "AccountInfo", "AssetInfo", "DependencyStep", "HeartbeatInfo", "ExecutionInfo", "HostKeyInfo", "HostParams", "ImportSummary", "NodeInfo",
           "PasswordRules", "RecordInfo", "TaskSpec", "fingerprint_sha256", "utcnow"]
