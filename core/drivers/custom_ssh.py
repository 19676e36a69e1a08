"""The `custom-ssh` platform: switches, routers, firewalls and appliances changed by a typed command sequence.

keyturn logs in with the asset's privileged account (pinned host key, as for hosts), opens a PTY shell and
runs the task's sequence (its own `commands`/`answers`, or a named template from core/drivers/templates.py).
Verification then logs in as the account with its new password, exactly as for hosts.
"""

from __future__ import annotations

import paramiko

from core.drivers.base import DriverError, PushResult, check_username
from core.drivers.interactive import Sequence, Values, build_sequence, run_sequence
from core.drivers.templates import get_template
from core.errors import InputError
from core.ssh import Timeouts
from storage.types import HostParams

DEFAULT_PROMPT = r"[>#$%] ?$"


def sequence_from_params(params: HostParams) -> Sequence:
    """The task's sequence: its own commands (the template, if named, gives prompt and refusal regex) or the template."""
    try:
        template = get_template(params.template) if params.template else None
    except InputError as exc:
        raise DriverError(str(exc)) from None
    if params.commands.strip():
        return build_sequence(params.commands, params.answers, params.prompt or (template.prompt if template else DEFAULT_PROMPT),
                              error=template.error if template else "", recv_timeout=params.recv_timeout,
                              delay_time=params.delay_time)
    if template is None:
        raise DriverError("custom-ssh: the task has neither commands nor a template")
    return build_sequence(template.commands, template.answers, params.prompt or template.prompt, error=template.error,
                          recv_timeout=params.recv_timeout, delay_time=params.delay_time)


class CustomSSHDriver:
    """Driver for `custom-ssh` assets: one privileged login, one interactive sequence per account."""

    def __init__(self, client: paramiko.SSHClient, *, login_user: str, params: HostParams = HostParams(),
                 become: str | None = None, timeouts: Timeouts = Timeouts(), login_password: str | None = None,
                 **_ignored: object) -> None:
        self.client = client
        self.login_user = login_user
        self.params = params
        self.become = become or None
        self.timeouts = timeouts
        self.login_password = login_password
        try:
            self.sequence = sequence_from_params(params)
        except DriverError:
            client.close()
            raise

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """Type the sequence with {password} = new_password; the outcome follows interactive.run_sequence."""
        check_username(username)
        values = Values(username, new_password, self.login_password, self.become)
        return run_sequence(self.client, self.sequence, values, deadline=deadline, margin=self.timeouts.margin)

    def install_key(self, username: str, public_line: str, strategy: str, *,
                    deadline: float | None = None) -> PushResult:
        """custom-ssh devices take passwords only."""
        raise DriverError("custom-ssh assets change passwords only, not SSH keys")

    def close(self) -> None:
        """Close the privileged connection."""
        self.client.close()
