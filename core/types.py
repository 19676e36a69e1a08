"""The plain data keyturn's use cases take and return, for front ends (which never import storage).

Storage defines these dataclasses (it fills them from its rows); core hands them on unchanged.
"""

from __future__ import annotations

from storage.drift import HEARTBEAT_STATUSES, DependencyStep, HeartbeatInfo
from storage.executions import FAILED, PENDING, PUSHING, RECORD_STATUSES, SUCCESS, SUPERSEDED, UNVERIFIED
from storage.tables import utcnow
from storage.types import (
    AccountInfo, AssetInfo, ExecutionInfo, HostKeyInfo, HostParams, ImportSummary, NodeInfo, PasswordRules, RecordInfo,
    TaskSpec, fingerprint_sha256,
)

__all__ = ["FAILED", "PENDING", "PUSHING", "RECORD_STATUSES", "SUCCESS", "SUPERSEDED", "UNVERIFIED", "HEARTBEAT_STATUSES", "AccountInfo", "AssetInfo", "DependencyStep", "HeartbeatInfo", "ExecutionInfo", "HostKeyInfo", "HostParams", "ImportSummary", "NodeInfo",
           "PasswordRules", "RecordInfo", "TaskSpec", "fingerprint_sha256", "utcnow"]
