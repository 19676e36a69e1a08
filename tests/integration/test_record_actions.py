"""Record actions against a real sshd sandbox host: ignore/unignore, verify on demand, TOTP-gated restore."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from core import operators as ops
from core.audit import list_events
from core.context import Context
from core.engine import run_task
from core.errors import InputError, PermissionDenied
from core.mfa import MfaSession, code_at
from core.record_actions import needs_attention, restore_record, set_ignored, verify_record
from storage import executions as rec
from storage.inventory import get_asset_row, upsert_account
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_rotation import build_inventory, make_task, vault
from tests.sandbox import SandboxHost, new_password

pytestmark = pytest.mark.sshd


fleet = module_fleet(1, ["alice"], doc="One host with alice.")


host = fresh_host(["alice"], remove_users=["late"], doc='The host, reset, without the user "late".')


def operator(ctx: Context) -> str:
    """A confirmed operator "ops" acting in ctx; returns the TOTP secret."""
    ctx.operator = "ops"
    ops.add_operator(ctx, "ops", "ops@example.test")
    enrolment = ops.start_enrolment(ctx, "ops")
    secret = parse_qs(urlparse(enrolment.uri).query)["secret"][0]
    earlier = datetime.now(timezone.utc) - timedelta(seconds=90)
    ops.confirm_enrolment(ctx, "ops", code_at(secret, earlier), now=earlier)
    return secret


def failed_record(ctx: Context, host: SandboxHost) -> rec.RecordInfo:
    """A failed record: the inventory has "late", the host does not (yet)."""
    build_inventory(ctx, [host], ["alice"])
    with ctx.db.write() as s:
        upsert_account(ctx.db, s, get_asset_row(s, host.name), "late", secret=new_password())
    from tests.tui.test_flows import unlocked

    # Creating and running a task need a fresh code once operators exist (issue 11).
    saved, ctx.mfa = ctx.mfa, unlocked(ctx)
    try:
        make_task(ctx, "late", [host], ["late"])
        info = run_task(ctx, "late")
    finally:
        ctx.mfa = saved
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    assert r.status == "failed"
    return r


def test_ignore_takes_a_failed_record_off_the_attention_list_and_unignore_brings_it_back(
        ctx: Context, host: SandboxHost) -> None:
    r = failed_record(ctx, host)
    assert [x.id for x in needs_attention(ctx)] == [r.id]
    set_ignored(ctx, [r.id], True)
    assert needs_attention(ctx) == []
    set_ignored(ctx, [r.id], False)
    assert [x.id for x in needs_attention(ctx)] == [r.id]
    assert [e.action for e in list_events(ctx, action="record.*")][:2] == ["record.unignore", "record.ignore"]
    with pytest.raises(InputError, match=r"^record 999: no such change record"):
        set_ignored(ctx, [r.id, 999], True)
    assert needs_attention(ctx) != []  # all or none


def test_verify_reports_and_restore_makes_a_working_new_secret_current(ctx: Context, host: SandboxHost) -> None:
    totp = operator(ctx)
    r = failed_record(ctx, host)
    old_current = vault(ctx, host.name, "late").secret
    # The user appears on the host holding the record's new secret (a push that landed after all).
    host.add_user("late", rec.record_secrets_full(ctx.db, r.id).new)
    outcome = verify_record(ctx, r.id)
    assert (outcome.new, outcome.status) == ("ok", "failed")
    assert "restore" in outcome.note
    mfa = MfaSession(ctx.settings)
    with pytest.raises(PermissionDenied, match="TOTP"):
        restore_record(ctx, mfa, r.id)
    assert vault(ctx, host.name, "late").secret == old_current
    mfa.unlock(ctx, code_at(totp, datetime.now(timezone.utc)))
    restore_record(ctx, mfa, r.id)
    current = vault(ctx, host.name, "late").secret
    assert current == rec.record_secrets_full(ctx.db, r.id).new and host.password_works("late", current or "")
    with pytest.raises(InputError, match="already the account's current one"):
        restore_record(ctx, mfa, r.id)


def test_restore_refuses_when_the_account_changed_since(ctx: Context, host: SandboxHost) -> None:
    totp = operator(ctx)
    r = failed_record(ctx, host)
    host.add_user("late", vault(ctx, host.name, "late").secret)
    from tests.tui.test_flows import unlocked

    ctx.mfa = unlocked(ctx)  # running a task is a step-up
    later = run_task(ctx, "late")  # now it works: the account moves on to a newer secret
    assert later.status == "success"
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(totp, datetime.now(timezone.utc)))
    host.set_password("late", rec.record_secrets_full(ctx.db, r.id).new or "")  # even if the host accepted it
    with pytest.raises(InputError, match="the account changed since this record"):
        restore_record(ctx, mfa, r.id)


def test_verify_settles_an_unverified_record(ctx: Context, host: SandboxHost) -> None:
    build_inventory(ctx, [host], ["alice"])
    make_task(ctx, "a", [host], ["alice"])
    info = run_task(ctx, "a")
    [r] = rec.list_records(ctx.db, execution_id=info.id)
    # Turn the settled success back into the state an interrupted verification leaves: unverified.
    # The account's version moved on when the record settled; an interrupted verification leaves the account
    # at the version the record started from (else verify rightly says `superseded`, issue 9).
    from storage.tables import Account, ChangeRecord

    with ctx.db.write() as s:
        row = s.get(ChangeRecord, r.id)
        assert row is not None
        row.status = "unverified"
        account = s.get(Account, row.account_id)
        assert account is not None
        row.start_version = account.version
    outcome = verify_record(ctx, r.id)
    assert (outcome.new, outcome.status) == ("ok", "success")
    assert rec.get_record(ctx.db, r.id).status == "success"
