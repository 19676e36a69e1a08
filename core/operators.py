"""Operators: who may run, edit and reveal, and their TOTP enrolment.

Until the first operator has confirmed enrolment anyone may do everything (a fresh install must be usable);
after that a person who is not a confirmed operator may only browse. Managing operators then also needs a
good TOTP code from the acting operator, because the acting name itself is only a claim (--operator, env).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.audit import record_event_in
from core.context import Context
from core.errors import InputError, PermissionDenied
from core.mfa import MfaSession, new_secret, provisioning_uri, verify_code
from storage import operators as store
from storage.operators import OperatorInfo

ACTIONS = ("browse", "run", "edit", "reveal")
SYSTEM_ACTOR = "scheduler"
ENROL_HINT = "keyturn operator enrol"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

__all__ = ["ACTIONS", "Enrolment", "OperatorInfo", "SYSTEM_ACTOR", "add_operator", "confirm_enrolment",
           "get_operator", "is_enforcing", "list_operators", "mark_system", "may_enrol", "remove_operator", "require",
           "require_admin", "reset_mfa", "start_enrolment"]


@dataclass(frozen=True)
class Enrolment:
    """What a new phone needs: the otpauth URI and its QR code. Shown once at enrolment, never logged."""

    operator: str
    uri: str = field(repr=False)
    qr: str = field(repr=False)


def mark_system(ctx: Context) -> Context:
    """Mark a context opened by keyturn itself (the scheduler) so it may run tasks with no person acting.

    Context.system, not the name: anyone can type --operator scheduler, no one can set this from outside.
    """
    ctx.operator = SYSTEM_ACTOR
    ctx.system = True
    return ctx


def is_enforcing(ctx: Context) -> bool:
    """Whether operators are enforced (some operator has confirmed enrolment)."""
    return store.confirmed_count(ctx.db) > 0


def require(ctx: Context, action: str) -> None:
    """Raise PermissionDenied unless the acting person may do action ('browse', 'run', 'edit' or 'reveal')."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if action == "browse":
        return
    if ctx.system and action == "run":
        return
    if not is_enforcing(ctx):
        return
    who = ctx.operator or ""
    info = store.find_operator(ctx.db, who) if who else None
    if info is None:
        raise PermissionDenied(f"{who or 'this user'!r} is not a keyturn operator: you may browse but not {action}; "
                               "act as an operator with --operator NAME, or ask one to add you")
    if not info.confirmed:
        raise PermissionDenied(f"operator {who!r} has not confirmed the TOTP enrolment, so may not {action} yet; "
                               f"{who} runs `{ENROL_HINT}` at their own terminal")


@dataclass(frozen=True)
class Standing:
    """What the acting person may do, read once: for a front end that must not wait on the database when a key
    is pressed (the app's UI thread). Only a hint for asking early: every use case still calls require() itself.

    enforcing: some operator has confirmed enrolment (then a name alone acts only through a confirmed operator).
    refusals: per action, the refusal require() raises (None: allowed).
    """

    enforcing: bool
    refusals: dict[str, str | None] = field(default_factory=dict)

    def refusal(self, action: str) -> str | None:
        """Why the acting person may not do action, or None."""
        return self.refusals.get(action)


def standing(ctx: Context) -> Standing:
    """The acting person's Standing now (reads the operators table)."""
    refusals: dict[str, str | None] = {}
    for action in ACTIONS:
        try:
            require(ctx, action)
            refusals[action] = None
        except PermissionDenied as exc:
            refusals[action] = str(exc)
    return Standing(is_enforcing(ctx), refusals)


def require_admin(ctx: Context, mfa: MfaSession | None = None) -> None:
    """Managing operators: once any operator is confirmed, only a confirmed operator who gave a code (within the
    unlock window of mfa, by default ctx.mfa) may; core.stepup.StepUpRequired ('operator.admin') otherwise.

    Every admin use case here (and core.scopes.set_scope) calls it before it writes."""
    from core.stepup import require_step_up  # core.stepup imports this module

    require_step_up(ctx, mfa if mfa is not None else ctx.mfa, "operator.admin")


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InputError(f"operator name: {name!r} is not 1-64 letters, digits, '.', '_', '-' or '@' starting with "
                         "a letter or digit")
    if name == SYSTEM_ACTOR:
        raise InputError(f"operator name: {name!r} is reserved for keyturn's scheduler")
    return name


def list_operators(ctx: Context) -> list[OperatorInfo]:
    """Every operator (without TOTP secrets)."""
    return store.list_operators(ctx.db)


def get_operator(ctx: Context, name: str) -> OperatorInfo:
    """One operator, or storage.inventory.NotFound."""
    return store.get_operator(ctx.db, name)


def add_operator(ctx: Context, name: str, email: str) -> OperatorInfo:
    """Create an operator without a second factor: the person enrols their own (start_enrolment) at their own
    terminal, so whoever adds them never sees the TOTP seed."""
    name = _check_name(name)
    email = (email or "").strip()
    if not _EMAIL.match(email):
        raise InputError(f"email {email!r}: expected an address like name@example.org")
    require_admin(ctx)
    with ctx.db.write() as s:
        if store.operator_exists(s, name):
            raise InputError(f"operator {name!r} already exists (use `keyturn operator reset-mfa {name}` if they lost "
                             "their phone)")
        info = store.add_operator(s, name, email)
        record_event_in(s, ctx, "operator.add", "operator", name, {"email": email})
    return info


def may_enrol(ctx: Context, name: str) -> bool:
    """Whether the acting person may see name's new TOTP seed: only name themselves once operators are enforced
    (before that a fresh install is open to whoever sets it up)."""
    return ctx.operator == name or not is_enforcing(ctx)


def start_enrolment(ctx: Context, name: str | None = None) -> Enrolment:
    """A fresh TOTP secret for the acting operator (or name), shown once; confirm_enrolment with a code from it.

    A confirmed operator cannot enrol again (that would replace their second factor without it): an admin's
    reset-mfa comes first. Starting again replaces a pending secret, and any failed tries with it.
    """
    name = name or ctx.operator or ""
    info = store.get_operator(ctx.db, name)  # NotFound names the operator
    if not may_enrol(ctx, name):
        raise PermissionDenied(f"only {name!r} may enrol their own second factor, at their own terminal "
                               f"(`{ENROL_HINT}` run as {name})")
    if info.confirmed:
        raise PermissionDenied(f"operator {name!r} is already enrolled; after a lost phone an admin runs "
                               f"`keyturn operator reset-mfa {name}`, then {name} enrols again")
    secret = new_secret()
    with ctx.db.write() as s:
        store.set_totp_secret(ctx.db, s, name, secret)
        record_event_in(s, ctx, "operator.enrol", "operator", name)
    uri = provisioning_uri(name, secret)
    from core.qr import qr_halfblocks  # segno only for an enrolment

    return Enrolment(name, uri, qr_halfblocks(uri))


def reset_mfa(ctx: Context, name: str) -> OperatorInfo:
    """Drop an operator's TOTP secret (lost phone): they cannot reveal or act until they enrol again themselves."""
    store.get_operator(ctx.db, name)  # NotFound before a code is asked
    require_admin(ctx)
    with ctx.db.write() as s:
        info = store.clear_totp_secret(s, name)
        record_event_in(s, ctx, "operator.reset_mfa", "operator", name)
    return info


def confirm_enrolment(ctx: Context, name: str, code: str, *, now=None) -> None:  # type: ignore[no-untyped-def]
    """Confirm an enrolment with a current code from the new secret (raises MfaFailed when wrong).

    Once operators are enforced only the person themselves may confirm: wrong codes count towards a lockout,
    so anyone else trying would lock them out.
    """
    store.get_operator(ctx.db, name)  # NotFound before anything is counted
    if not may_enrol(ctx, name):
        raise PermissionDenied(f"only {name!r} may confirm their own enrolment, at their own terminal")
    verify_code(ctx, name, code, now=now, enrolling=True)


def remove_operator(ctx: Context, name: str) -> OperatorInfo:
    """Delete an operator (their audit events stay)."""
    store.get_operator(ctx.db, name)  # NotFound before a code is asked
    require_admin(ctx)
    with ctx.db.write() as s:
        info = store.remove_operator(s, name)
        record_event_in(s, ctx, "operator.remove", "operator", name, {"email": info.email})
    return info
