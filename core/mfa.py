"""TOTP checks (RFC 6238: 30 s steps, 6 digits) with replay refusal, lockout, and per-session unlocks.

Counters live in the operator row so separate CLI processes share one lockout; the check runs inside one
write transaction so two processes can never both accept the same time step.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyotp

from core.audit import record_event_in
from core.config import Settings
from core.context import Context
from core.errors import PermissionDenied
from storage import operators as store
from storage.inventory import NotFound
from storage.tables import utcnow

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of now: clocks of phones drift

Clock = Callable[[], datetime]


class MfaFailed(PermissionDenied):
    """A code was refused; remaining says how many tries are left before the lockout."""

    def __init__(self, message: str, *, remaining: int | None = None, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.locked_until = locked_until


class MfaLocked(MfaFailed):
    """Too many wrong codes: the operator is locked out until locked_until."""


@dataclass(frozen=True)
class MfaStatus:
    """An operator's code-check state, for showing tries left or the lockout (no secret)."""

    operator: str
    confirmed: bool
    remaining: int
    locked_until: datetime | None


def new_secret() -> str:
    """A fresh random TOTP secret (160 bits, base32)."""
    return pyotp.random_base32(32)


def provisioning_uri(operator: str, secret: str) -> str:
    """The otpauth:// URI an authenticator app enrols from (issuer keyturn)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=operator, issuer_name="keyturn")


def time_step(now: datetime) -> int:
    """The RFC 6238 time step of an instant."""
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, now: datetime) -> str:
    """The code for an instant (used by tests and the enrolment check)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(time_step(now))


def _aware(now: datetime | None) -> datetime:
    now = now or utcnow()
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(timezone.utc)


def _match_step(secret: str, code: str, step: int) -> int | None:
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    found = None
    # Compare against every candidate (no early exit) so timing does not tell which step matched.
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(candidate).encode(), code.encode()):
            found = candidate
    return found


def verify_code(ctx: Context, operator_name: str, code: str, *, now: datetime | None = None,
                enrolling: bool = False) -> None:
    """Accept a current code for operator_name or raise MfaFailed / MfaLocked; every attempt is audited.

    enrolling=True checks a code from a not yet confirmed secret and confirms it (operator confirm).
    """
    now = _aware(now)
    settings = ctx.settings
    code = (code or "").replace(" ", "").strip()
    failure: MfaFailed | None = None
    with ctx.db.write() as s:
        if not store.operator_exists(s, operator_name):
            record_event_in(s, ctx, "mfa.refused", "operator", operator_name, {"reason": "no such operator"})
            failure = MfaFailed(f"no operator named {operator_name!r}; add one with `keyturn operator add`")
        else:
            state = store.load_mfa_state(ctx.db, s, operator_name)
            failure = _check(ctx, s, state, code, now, settings, enrolling)
            store.save_mfa_state(s, state)
    # Raised only after the commit, so the failed try and its audit event are kept.
    if failure is not None:
        raise failure


def _check(ctx: Context, s, state: store.MfaState, code: str, now: datetime, settings: Settings,  # type: ignore[no-untyped-def]
           enrolling: bool) -> MfaFailed | None:
    name = state.name
    if state.secret is None:
        record_event_in(s, ctx, "mfa.refused", "operator", name, {"reason": "no TOTP secret"})
        return MfaFailed(f"operator {name!r} has not enrolled a second factor yet; {name} runs "
                         "`keyturn operator enrol` at their own terminal")
    if not state.confirmed and not enrolling:
        record_event_in(s, ctx, "mfa.refused", "operator", name, {"reason": "enrolment not confirmed"})
        return MfaFailed(f"operator {name!r} has not confirmed the TOTP enrolment; "
                         f"{name} runs `keyturn operator enrol` (or `keyturn operator confirm {name}`) first")
    if state.locked_until is not None:
        if state.locked_until > now:
            record_event_in(s, ctx, "mfa.locked", "operator", name, {"locked_until": state.locked_until.isoformat()})
            return MfaLocked(_locked_message(name, state.locked_until, now), remaining=0, locked_until=state.locked_until)
        state.locked_until = None  # the lockout is over: a fresh set of tries
        state.failed_attempts = 0
    step = time_step(now)
    matched = _match_step(state.secret, code, step) if code.isdigit() and len(code) == DIGITS else None
    if matched is not None and state.last_totp_step is not None and matched <= state.last_totp_step:
        reason, message = "code already used", "this code was already used; wait for the next one"
    elif matched is None:
        reason, message = "wrong code", "wrong code"
    else:
        state.last_totp_step = matched
        state.failed_attempts = 0
        action = "operator.confirm" if enrolling and not state.confirmed else "mfa.ok"
        state.confirmed = True
        record_event_in(s, ctx, action, "operator", name, {"step_offset": matched - step})
        return None
    state.failed_attempts += 1
    if state.failed_attempts >= settings.mfa_max_failures:
        state.locked_until = now + timedelta(seconds=settings.mfa_lockout_seconds)
        state.failed_attempts = 0
        record_event_in(s, ctx, "mfa.lockout", "operator", name,
                        {"reason": reason, "locked_until": state.locked_until.isoformat()})
        return MfaLocked(f"{message}; {_locked_message(name, state.locked_until, now)}",
                         remaining=0, locked_until=state.locked_until)
    remaining = settings.mfa_max_failures - state.failed_attempts
    record_event_in(s, ctx, "mfa.failed", "operator", name, {"reason": reason, "failures": state.failed_attempts})
    return MfaFailed(f"operator {name!r}: {message}; {remaining} tr{'y' if remaining == 1 else 'ies'} left "
                     "before a lockout", remaining=remaining)


def _locked_message(name: str, until: datetime, now: datetime) -> str:
    minutes = max(1, int((until - now).total_seconds() + 59) // 60)
    return f"operator {name!r} is locked out after too many wrong codes; try again in {minutes} min"


def mfa_status(ctx: Context, operator_name: str, *, now: datetime | None = None) -> MfaStatus:
    """Tries left and any lockout, for the code prompt; NotFound for an unknown operator."""
    now = _aware(now)
    info = store.get_operator(ctx.db, operator_name)
    locked = info.locked_until if info.locked_until is not None and info.locked_until > now else None
    failed = 0 if (info.locked_until is not None and locked is None) else info.failed_attempts
    return MfaStatus(info.name, info.confirmed, 0 if locked else ctx.settings.mfa_max_failures - failed, locked)


class MfaSession:
    """Who has given a good code in this app session (in memory only), and until when.

    One per process or TUI app; an unlock lasts Settings.mfa_unlock_seconds. clock is injectable for tests.
    """

    def __init__(self, settings: Settings | None = None, *, unlock_seconds: float | None = None,
                 clock: Clock = utcnow) -> None:
        if unlock_seconds is None:
            unlock_seconds = settings.mfa_unlock_seconds if settings is not None else Settings.mfa_unlock_seconds
        self.unlock_seconds = float(unlock_seconds)
        self.clock = clock
        self._until: dict[str, datetime] = {}

    def now(self) -> datetime:
        """The session clock's current time."""
        return _aware(self.clock())

    def unlock(self, ctx: Context, code: str, operator: str | None = None, *, now: datetime | None = None) -> None:
        """Check a code for operator (default ctx.operator) and, if good, unlock that operator for this session."""
        name = operator or ctx.operator
        if not name:
            raise MfaFailed("no operator is acting; pass --operator NAME")
        now = _aware(now) if now is not None else self.now()
        verify_code(ctx, name, code, now=now)
        self._until[name] = now + timedelta(seconds=self.unlock_seconds)

    def unlocked(self, operator: str | None, now: datetime | None = None) -> bool:
        """Whether operator gave a good code within the unlock time."""
        if not operator or operator not in self._until:
            return False
        now = _aware(now) if now is not None else self.now()
        if now >= self._until[operator]:
            del self._until[operator]
            return False
        return True

    def remaining_seconds(self, operator: str | None, now: datetime | None = None) -> float:
        """Seconds the operator stays unlocked (0 when locked)."""
        if not self.unlocked(operator, now):
            return 0.0
        now = _aware(now) if now is not None else self.now()
        return (self._until[operator] - now).total_seconds()  # type: ignore[index]

    def lock(self, operator: str | None = None) -> None:
        """End the unlock of one operator, or of everyone."""
        if operator is None:
            self._until.clear()
        else:
            self._until.pop(operator, None)


__all__ = ["MfaFailed", "MfaLocked", "MfaSession", "MfaStatus", "NotFound", "code_at", "mfa_status", "new_secret",
           "provisioning_uri", "time_step", "verify_code"]
