"""TOTP step-up for changes that can redirect or expose a secret.

Changing where an asset is (address, port, platform), trusting a host key, privileged accounts, creating,
editing or running a task, its parameters, rotating the master key, mail settings and operator admin all
decide where secrets go. Once operators are enforced, each needs a good code from the acting person within
the unlock window (the app's MfaSession; on the command line, one code per command). keyturn's own
scheduler (core.operators.mark_system) runs tasks without one.

Each use case in core calls require_step_up itself, after it has parsed or fetched its input (so a bad file or
an unreachable host is reported first) and before it writes anything: a front end that catches StepUpRequired,
asks for a code and calls the use case again repeats nothing that was done. Front ends keep no table of which
actions need a code.
"""

from __future__ import annotations

from core.context import Context
from core.errors import PermissionDenied
from core.mfa import MfaSession
from core.operators import is_enforcing, require

# What each step-up protects, as shown to the person asked for a code.
STEP_UP = {
    "asset.edit": "changing where an asset is or how it is reached (address, port, platform, TLS, gateway)",
    "asset.trust": "trusting a host key",
    "account.privileged": "changing a privileged account",
    "inventory.import": "importing an inventory (it can move assets, pin host keys and add privileged accounts)",
    "task.create": "creating a task",
    "task.edit": "editing a task",
    "task.run": "running a task",
    "task.params": "changing a task's parameters",
    "key.rotate": "rotating the master key",
    "mail.settings": "changing the mail settings",
    "operator.admin": "managing operators",
}


class StepUpRequired(PermissionDenied):
    """The action needs a fresh TOTP code from the acting person; a front end asks for one and tries again."""

    def __init__(self, action: str, operator: str | None) -> None:
        super().__init__(f"{STEP_UP.get(action, action)} needs a fresh TOTP code from {operator or 'an operator'!r}")
        self.action = action
        self.operator = operator


def require_step_up(ctx: Context, mfa: MfaSession | None, action: str, permission: str = "edit") -> None:
    """Raise unless the acting person may do permission and has given a good code within the unlock window."""
    require(ctx, permission)
    if ctx.system and permission == "run":
        return
    if not is_enforcing(ctx):
        return  # a fresh install with no confirmed operator: nobody could give a code yet
    if mfa is None or not mfa.unlocked(ctx.operator):
        raise StepUpRequired(action, ctx.operator)
