"""Self-change: an account whose current password is in the vault logs in as itself and changes it.

No privileged account is needed. On linux/unix/aix the account runs `passwd` and answers its real prompts
(current, new, retyped password); on custom-ssh it runs the task's device sequence with {login_password} =
its own current password. Records, verification and reconcile are the engine's, unchanged.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from core import ssh
from core.drivers.base import NOT_APPLIED, DriverError, PushResult, check_username
from core.drivers.interactive import DEADLINE_MARGIN, Sequence, Values, build_sequence, run_sequence
from core.drivers.templates import SELF_PASSWD
from core.ssh import Timeouts
from storage.types import AssetInfo, HostParams

if TYPE_CHECKING:  # pragma: no cover
    from core.engine import Job, _Run

SELF_CHANGE_PLATFORMS = ("linux", "unix", "aix", "custom-ssh")


def will_self_change(params: HostParams, platform: str, secret_type: str, has_secret: bool) -> bool:
    """Whether a task with params changes this account by logging in as the account itself."""
    return bool(params.self_change) and platform in SELF_CHANGE_PLATFORMS and secret_type == "password" and has_secret


def self_sequence(platform: str, params: HostParams, deadline: float | None = None,
                  margin: float = DEADLINE_MARGIN) -> Sequence:
    """The sequence an account runs on itself: passwd on hosts, the task's sequence on custom-ssh.

    On linux/unix with a deadline, passwd runs under `timeout -s KILL`: the host itself ends it in time even
    when keyturn's connection is gone (the shadow file is replaced atomically, so a kill leaves no half state).
    """
    if platform == "custom-ssh":
        from core.drivers.custom_ssh import sequence_from_params

        return sequence_from_params(params)
    t = SELF_PASSWD
    commands = list(t.commands)
    if deadline is not None and platform in ("linux", "unix"):
        seconds = max(1, math.floor(deadline - time.time() - margin))
        commands[0] = f"timeout -s KILL {seconds} passwd"
    # passwd waits for each answer itself, so no pause between lines is needed on a host.
    return build_sequence(commands, t.answers, t.prompt, error=t.error, recv_timeout=params.recv_timeout)


class SelfChangeDriver:
    """Pushes one account's new password over a login as that account (opened at push time)."""

    def __init__(self, asset: AssetInfo, current_password: str | None, *, params: HostParams = HostParams(),
                 become: str | None = None, timeouts: Timeouts = Timeouts()) -> None:
        self.asset = asset
        self.current = current_password
        self.params = params
        self.become = become
        self.timeouts = timeouts

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """Log in as username with its current password and run the platform's interactive change."""
        check_username(username)
        seq = self_sequence(self.asset.platform, self.params, deadline, self.timeouts.margin)
        values = Values(username, new_password, self.current, self.become)
        from core.drivers.interactive import render

        render(seq, values)  # a bad value is refused before even logging in
        try:
            client = ssh.connect(self.asset, username, password=self.current, timeouts=self.timeouts)
        except ssh.AuthRejected:
            return PushResult(NOT_APPLIED, "self-change: the vault's current password was rejected at login")
        except ssh.SSHError as exc:
            return PushResult(NOT_APPLIED, f"self-change: {ssh.scrub(str(exc), [self.current, new_password])}")
        try:
            return run_sequence(client, seq, values, deadline=deadline, margin=self.timeouts.margin)
        finally:
            client.close()

    def install_key(self, username: str, public_line: str, strategy: str, *,
                    deadline: float | None = None) -> PushResult:
        """Self-change covers passwords only."""
        raise DriverError("self-change covers passwords only")

    def close(self) -> None:
        """Nothing stays open between accounts."""


def change_own_accounts(run: "_Run", asset: AssetInfo, remaining: list["Job"]) -> None:
    """Change, each over its own login, the jobs of remaining that self-change; they are removed from it."""
    from storage import executions as rec
    from storage.inventory import account_secrets

    for job in list(remaining):
        if run.cancel.is_set():
            return
        if job.secret_type != "password" or asset.platform not in SELF_CHANGE_PLATFORMS:
            continue
        current = rec.record_secrets_full(run.db, job.record_id).old
        if not current:
            continue  # no known current password: the privileged path (if any) changes it
        become = run.spec.become_password or account_secrets(run.db, job.account_id).become
        remaining.remove(job)
        run.change_one(SelfChangeDriver(asset, current, params=run.spec.params, become=become, timeouts=run.timeouts),
                       asset, job)
