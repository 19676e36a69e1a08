"""TOTP checks against a controlled clock: window, replay, lockout and its end, unlock expiry, operator rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from core import operators as ops
from core.audit import list_events
from core.errors import PermissionDenied
from core.mfa import MfaFailed, MfaLocked, MfaSession, code_at, mfa_status, verify_code
from core.qr import qr_halfblocks, qr_matrix

# Storage, engine, scheduler, MFA rules: the same on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_backends

T0 = datetime(2025, 3, 1, 12, 0, 10, tzinfo=timezone.utc)  # 10 s into a 30 s step


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def secret_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


@pytest.fixture
def alice(ctx):
    """A confirmed operator 'alice' (acting in ctx); returns her TOTP secret."""
    ctx.operator = "alice"
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    secret = secret_of(enrolment.uri)
    ops.confirm_enrolment(ctx, "alice", code_at(secret, T0 - timedelta(minutes=5)), now=T0 - timedelta(minutes=5))
    return secret


def test_enrolment_uri_and_qr(ctx):
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    assert enrolment.uri.startswith("otpauth://totp/keyturn:alice?")
    query = parse_qs(urlparse(enrolment.uri).query)
    assert query["issuer"] == ["keyturn"] and len(query["secret"][0]) == 32
    assert set(enrolment.qr) <= set("\u2580\u2584\u2588 \n")
    assert "secret" not in repr(enrolment) and query["secret"][0] not in repr(enrolment)
    # The secret is in no audit event.
    assert all(query["secret"][0] not in str(e) for e in list_events(ctx))


def test_qr_text_draws_the_symbol_light_modules_filled():
    data = "otpauth://totp/keyturn:bob?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=keyturn"
    matrix = qr_matrix(data)
    assert all(not v for v in matrix[0]) and all(not row[0] for row in matrix)  # quiet zone is light
    lines = qr_halfblocks(data).split("\n")
    assert len(lines) == (len(matrix) + 1) // 2 and all(len(line) == len(matrix[0]) for line in lines)
    # Decode the characters back into modules: it must be the same symbol (light = filled half).
    top = {"\u2588": True, "\u2580": True, "\u2584": False, " ": False}
    bottom = {"\u2588": True, "\u2584": True, "\u2580": False, " ": False}
    decoded = []
    for line in lines:
        decoded.append([not top[c] for c in line])
        decoded.append([not bottom[c] for c in line])
    assert decoded[: len(matrix)] == matrix


def test_unconfirmed_operator_cannot_unlock(ctx):
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    ctx.operator = "alice"
    with pytest.raises(MfaFailed, match="not confirmed"):
        MfaSession(ctx.settings, clock=lambda: T0).unlock(ctx, code_at(secret_of(enrolment.uri), T0))


def test_right_code_unlocks_and_wrong_code_is_refused(ctx, alice):
    clock = FakeClock(T0)
    mfa = MfaSession(ctx.settings, clock=clock)
    with pytest.raises(MfaFailed, match="wrong code.*4 tries left") as exc:
        mfa.unlock(ctx, "000000" if code_at(alice, T0) != "000000" else "111111")
    assert exc.value.remaining == 4 and not mfa.unlocked("alice")
    mfa.unlock(ctx, code_at(alice, T0))
    assert mfa.unlocked("alice") and not mfa.unlocked("bob")
    actions = [e.action for e in list_events(ctx)]
    assert actions[:2] == ["mfa.ok", "mfa.failed"]


def test_replayed_code_is_refused(ctx, alice):
    verify_code(ctx, "alice", code_at(alice, T0), now=T0)
    with pytest.raises(MfaFailed, match="already used"):
        verify_code(ctx, "alice", code_at(alice, T0), now=T0 + timedelta(seconds=5))
    # An older step than the last accepted one is refused too, even inside the window.
    with pytest.raises(MfaFailed, match="already used"):
        verify_code(ctx, "alice", code_at(alice, T0 - timedelta(seconds=30)), now=T0 + timedelta(seconds=6))
    verify_code(ctx, "alice", code_at(alice, T0 + timedelta(seconds=30)), now=T0 + timedelta(seconds=30))


def test_window_is_one_step_either_side(ctx, alice):
    verify_code(ctx, "alice", code_at(alice, T0 - timedelta(seconds=30)), now=T0)  # previous step
    verify_code(ctx, "alice", code_at(alice, T0 + timedelta(seconds=30)), now=T0)  # next step
    later = T0 + timedelta(minutes=10)
    with pytest.raises(MfaFailed, match="wrong code"):
        verify_code(ctx, "alice", code_at(alice, later - timedelta(seconds=60)), now=later)
    with pytest.raises(MfaFailed, match="wrong code"):
        verify_code(ctx, "alice", code_at(alice, later + timedelta(seconds=60)), now=later)


def test_lockout_after_five_wrong_codes_and_its_end(ctx, alice):
    clock = FakeClock(T0)
    wrong = "123456" if code_at(alice, T0) != "123456" else "654321"
    for left in (4, 3, 2, 1):
        with pytest.raises(MfaFailed) as exc:
            verify_code(ctx, "alice", wrong, now=clock())
        assert exc.value.remaining == left and not isinstance(exc.value, MfaLocked)
    with pytest.raises(MfaLocked, match="locked out.*15 min"):
        verify_code(ctx, "alice", wrong, now=clock())
    # While locked even the right code is refused, and the refusal does not extend the lockout.
    clock.advance(14 * 60)
    with pytest.raises(MfaLocked, match="1 min"):
        verify_code(ctx, "alice", code_at(alice, clock()), now=clock())
    assert mfa_status(ctx, "alice", now=clock()).locked_until is not None
    clock.advance(61)
    status = mfa_status(ctx, "alice", now=clock())
    assert status.locked_until is None and status.remaining == 5
    verify_code(ctx, "alice", code_at(alice, clock()), now=clock())
    actions = [e.action for e in list_events(ctx, action="mfa.*")]
    assert actions.count("mfa.lockout") == 1 and actions.count("mfa.locked") == 1 and actions[0] == "mfa.ok"


def test_lockout_is_shared_between_processes(ctx, alice, settings):
    """The counters live in the database: a second Context (another CLI process) sees the lockout."""
    from core.context import open_context

    wrong = "123456" if code_at(alice, T0) != "123456" else "654321"
    for _ in range(5):
        with pytest.raises(MfaFailed):
            verify_code(ctx, "alice", wrong, now=T0)
    other = open_context(settings, operator="alice", source="other")
    try:
        with pytest.raises(MfaLocked):
            verify_code(other, "alice", code_at(alice, T0), now=T0)
    finally:
        other.close()


def test_unlock_expires_after_five_minutes(ctx, alice):
    clock = FakeClock(T0)
    mfa = MfaSession(ctx.settings, clock=clock)
    mfa.unlock(ctx, code_at(alice, clock()))
    clock.advance(299)
    assert mfa.unlocked("alice") and 0 < mfa.remaining_seconds("alice") <= 1
    clock.advance(1)
    assert not mfa.unlocked("alice")
    # Another session (another app) was never unlocked.
    assert not MfaSession(ctx.settings, clock=clock).unlocked("alice")


def test_require_lets_anyone_act_until_an_operator_is_confirmed(ctx):
    ctx.operator = "nobody"
    for action in ("browse", "run", "edit", "reveal"):
        ops.require(ctx, action)
    ops.add_operator(ctx, "alice", "alice@example.org")
    enrolment = ops.start_enrolment(ctx, "alice")
    ops.require(ctx, "run")  # alice has not confirmed yet
    ops.confirm_enrolment(ctx, "alice", code_at(secret_of(enrolment.uri), T0), now=T0)
    ops.require(ctx, "browse")
    for action in ("run", "edit", "reveal"):
        with pytest.raises(PermissionDenied, match=f"'nobody' is not a keyturn operator.*not {action}"):
            ops.require(ctx, action)
    ctx.operator = "alice"
    ops.require(ctx, "reveal")
    with pytest.raises(ValueError):
        ops.require(ctx, "fly")


def test_scheduler_runs_only_when_keyturn_marks_it(ctx, alice):
    ctx.operator = "scheduler"  # a person typing --operator scheduler gets nothing special
    with pytest.raises(PermissionDenied):
        ops.require(ctx, "run")
    ops.mark_system(ctx)
    ops.require(ctx, "run")
    with pytest.raises(PermissionDenied):
        ops.require(ctx, "reveal")


def _admin_unlocked(ctx) -> None:
    """The acting operator gave a code a moment ago: operator admin is a step-up (core.stepup)."""
    from core.mfa import MfaSession

    ctx.mfa = MfaSession(ctx.settings)
    ctx.mfa._until[ctx.operator] = ctx.mfa.now() + timedelta(minutes=5)


def test_reset_mfa_unconfirms_and_old_secret_stops_working(ctx, alice):
    _admin_unlocked(ctx)
    info = ops.reset_mfa(ctx, "alice")  # the admin gets no seed back, only the state
    assert not info.confirmed and not info.has_secret and "secret" not in repr(info).lower().replace("has_secret", "")
    with pytest.raises(MfaFailed, match="not enrolled a second factor"):
        verify_code(ctx, "alice", code_at(alice, T0), now=T0)
    new = secret_of(ops.start_enrolment(ctx, "alice").uri)  # alice, at her own terminal
    assert new != alice
    with pytest.raises(MfaFailed, match="wrong code"):
        ops.confirm_enrolment(ctx, "alice", code_at(alice, T0), now=T0)
    ops.confirm_enrolment(ctx, "alice", code_at(new, T0), now=T0)
    verify_code(ctx, "alice", code_at(new, T0 + timedelta(seconds=30)), now=T0 + timedelta(seconds=30))


def test_only_the_person_enrols_their_own_second_factor(ctx, alice):
    """Finding 10: whoever adds an operator never holds their TOTP seed; the person enrols at their terminal."""
    _admin_unlocked(ctx)
    info = ops.add_operator(ctx, "bob", "bob@example.org")  # alice (enforcing) adds bob, after her code
    assert not info.has_secret and not info.confirmed
    with pytest.raises(PermissionDenied, match="only 'bob' may enrol their own second factor"):
        ops.start_enrolment(ctx, "bob")
    ctx.operator = "bob"
    with pytest.raises(MfaFailed, match="not enrolled a second factor"):
        verify_code(ctx, "bob", "123456", now=T0)
    first = ops.start_enrolment(ctx)
    again = ops.start_enrolment(ctx)  # starting over replaces the pending seed
    assert first.operator == "bob" and secret_of(first.uri) != secret_of(again.uri)
    with pytest.raises(MfaFailed, match="wrong code"):
        ops.confirm_enrolment(ctx, "bob", code_at(secret_of(first.uri), T0), now=T0)
    ops.confirm_enrolment(ctx, "bob", code_at(secret_of(again.uri), T0), now=T0)
    with pytest.raises(PermissionDenied, match="already enrolled"):
        ops.start_enrolment(ctx)  # a second factor is never replaced without an admin's reset
    ctx.operator = "alice"
    with pytest.raises(PermissionDenied, match="only 'bob' may confirm"):
        ops.confirm_enrolment(ctx, "bob", "123456", now=T0)
    assert [e.action for e in list_events(ctx) if e.object_id == "bob"][:4] == [
        "operator.confirm", "mfa.failed", "operator.enrol", "operator.enrol"]
    assert all(secret_of(again.uri) not in str(e) for e in list_events(ctx))
