"""Fixtures of the security tests: the sandbox hosts of the integration tests."""

from __future__ import annotations

from tests.integration.conftest import sandbox_fleet, sandbox_host  # noqa: F401 - fixtures re-used by name

from collections.abc import Iterator

import pytest

from tests.security.deployment import Deployment


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """One sandbox host set up per the README's sudo recipe, shared by a module's tests."""
    from tests.sandbox import SandboxFleet, require_sandbox

    require_sandbox()
    fleet = SandboxFleet(1)
    try:
        yield Deployment(fleet.hosts[0])
    finally:
        fleet.close()
