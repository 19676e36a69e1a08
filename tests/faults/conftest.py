"""Fault-injection tests: real sshd sandbox hosts with a slowed PAM stack, real signals, real full disks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.context import Context
from tests.integration.test_rotation import vault
from tests.sandbox import SandboxHost

CHPASSWD_PAM = "/etc/pam.d/chpasswd"
ORIGINAL_PAM = "# The PAM configuration file for the Shadow 'chpasswd' service\n#\n\n@include common-password\n\n"


def slow_pam(host: SandboxHost, seconds: float) -> None:
    """Make the host's chpasswd wait `seconds` in its PAM password stack before it writes the new password."""
    host.write_file(CHPASSWD_PAM, f"password optional pam_exec.so quiet /bin/sleep {seconds:g}\n" + ORIGINAL_PAM,
                    mode=0o644, owner="root")


def normal_pam(host: SandboxHost) -> None:
    """The stock chpasswd PAM stack."""
    host.write_file(CHPASSWD_PAM, ORIGINAL_PAM, mode=0o644, owner="root")


def mismatches(ctx: Context, hosts: list[SandboxHost], users: tuple[str, ...] | list[str]) -> list[str]:
    """Accounts whose host does not accept the secret the vault calls current (the promise: none)."""
    bad = []
    for h in hosts:
        for u in users:
            current = vault(ctx, h.name, u).secret
            if current is None or not h.password_works(u, current):
                bad.append(f"{h.name}/{u}")
    return bad


@pytest.fixture
def restore_pam() -> Iterator[list[SandboxHost]]:
    """Hosts appended to the yielded list get their stock PAM stack back at teardown."""
    touched: list[SandboxHost] = []
    yield touched
    for h in touched:
        normal_pam(h)
