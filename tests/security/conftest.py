"""Fixtures of the security tests: the sandbox hosts of the integration tests."""

from __future__ import annotations

from tests.integration.conftest import sandbox_fleet, sandbox_host  # noqa: F401 - fixtures re-used by name
