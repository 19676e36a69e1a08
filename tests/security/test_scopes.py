"""Operator scopes: an operator limited to /prod sees and reveals only assets below /prod, listings included."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from core.context import Context
from core.errors import PermissionDenied
from core.mfa import MfaSession, code_at
from core.operators import add_operator, confirm_enrolment, start_enrolment
from core.reveal import reveal_pairs
from core.scopes import filter_in_scope, set_scope
from storage.inventory import list_accounts, list_assets, upsert_account, upsert_asset
from storage.tables import utcnow


def test_a_scoped_operator_sees_and_reveals_only_inside_the_scope(ctx: Context) -> None:
    with ctx.db.write() as s:
        web, _ = upsert_asset(s, "web1", address="10.0.0.1", nodes=["/prod/web"])
        lab, _ = upsert_asset(s, "lab1", address="10.0.0.2", nodes=["/lab"])
        upsert_account(ctx.db, s, web, "app", secret="web-Secret-1")
        upsert_account(ctx.db, s, lab, "app", secret="lab-Secret-1")
    add_operator(ctx, "carol", "carol@example.org")
    enrolment = start_enrolment(ctx, "carol")
    secret = pyotp.parse_uri(enrolment.uri).secret
    ctx.operator = "carol"
    confirm_enrolment(ctx, "carol", code_at(secret, utcnow() - timedelta(seconds=30)))
    assert set_scope(ctx, "carol", ["/prod"]) == ["/prod"]

    assert [a.name for a in filter_in_scope(ctx, list_assets(ctx.db), lambda a: a.id)] == ["web1"]
    assert [a.asset_name for a in filter_in_scope(ctx, list_accounts(ctx.db), lambda a: a.asset_id)] == ["web1"]
    mfa = MfaSession(ctx.settings)
    mfa.unlock(ctx, code_at(secret, utcnow()))
    assert [i.secret for i in reveal_pairs(ctx, mfa, [("web1", "app")], reason="T-1")] == ["web-Secret-1"]
    with pytest.raises(PermissionDenied, match="outside your scope"):
        reveal_pairs(ctx, mfa, [("lab1", "app")], reason="T-1")

    set_scope(ctx, "carol", [])
    assert len(filter_in_scope(ctx, list_assets(ctx.db), lambda a: a.id)) == 2
