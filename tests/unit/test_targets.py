"""Target preview on a real inventory: who a task would change, every exclusion reason, secure mode, scale."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import event

from core.context import Context
from core.errors import InputError
from core.targets import preview, preview_summary
from storage.inventory import ensure_node, upsert_account, upsert_asset
from storage.tables import Account, Asset, AssetNode
from storage.types import TaskSpec

USERS = ["root", "admin", "alice", "bob", "carol", "dave"]


@pytest.fixture
def inventory(ctx: Context) -> Context:
    """One asset per exclusion reason, spread over a node tree."""
    db = ctx.db
    with db.write() as s:
        web1, _ = upsert_asset(s, "web1", address="10.0.0.1", port=2222, nodes=["/prod/web"])
        upsert_account(db, s, web1, "root", secret="r", privileged=True)  # first privileged: keyturn logs in with it
        upsert_account(db, s, web1, "admin", secret="a", privileged=True)
        upsert_account(db, s, web1, "alice", secret="x")
        upsert_account(db, s, web1, "bob", secret="x", can_change=False)
        upsert_account(db, s, web1, "carol", secret_type="ssh_key", secret="KEY")
        edge, _ = upsert_asset(s, "edge1", address="10.0.0.2", nodes=["/prod/web/edge"])  # found recursively
        upsert_account(db, s, edge, "alice", secret="x")
        old, _ = upsert_asset(s, "old1", address="10.0.0.3", nodes=["/prod/db"], active=False)
        upsert_account(db, s, old, "root", secret="r", privileged=True)
        upsert_account(db, s, old, "alice", secret="x")
        win, _ = upsert_asset(s, "win1", address="10.0.0.4", platform="windows", nodes=["/prod/db"])
        upsert_account(db, s, win, "alice", secret="x")
        sw, _ = upsert_asset(s, "sw1", address="10.0.0.5", platform="cisco")
        upsert_account(db, s, sw, "alice", secret="x")
        aix, _ = upsert_asset(s, "aix1", address="10.0.0.6", platform="aix", nodes=["/lab"])  # not in /prod
        upsert_account(db, s, aix, "root", secret="r", privileged=True)
        upsert_account(db, s, aix, "alice", secret="x")
    return ctx


def _by_pair(result) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    out = {(t.asset_name, t.username): "target" for t in result.targets}
    out.update({(e.asset_name, e.username): e.reason for e in result.excluded})
    return out


def test_preview_in_secure_mode_gives_each_reason(inventory: Context) -> None:
    spec = TaskSpec(name="t", usernames=USERS, nodes=["/prod"], assets=["sw1"])
    result = preview(inventory, spec)
    got = _by_pair(result)
    assert got[("web1", "alice")] == "target"
    assert got[("web1", "root")] == "secure mode: the account keyturn logs in with"
    assert got[("web1", "admin")] == "secure mode: privileged account"
    assert got[("web1", "bob")] == "can_change is off"
    assert got[("web1", "carol")] == "no such account on this asset"  # she has a key, the task changes passwords
    assert got[("web1", "dave")] == "no such account on this asset"
    assert got[("edge1", "alice")] == "no privileged account on the asset"
    assert got[("old1", "alice")] == "asset inactive"
    assert got[("win1", "alice")] == "windows domain accounts are not supported"
    assert got[("sw1", "alice")] == "platform cisco not supported"
    assert not any(a == "aix1" for a, _ in got)  # /lab is not in scope
    # Every (asset, user) in scope is accounted for exactly once.
    assert len(got) == len(result.targets) + len(result.excluded) == 5 * len(USERS)
    target = result.targets[0]
    assert (target.address, target.port, target.platform, target.secret_type, target.privileged) == \
        ("10.0.0.1", 2222, "linux", "password", False)
    assert result.summary().startswith("1 account on 1 asset; 29 excluded (")
    assert "1 secure mode: privileged account" in result.summary()


def test_secure_mode_off_lets_privileged_and_login_accounts_be_changed(inventory: Context) -> None:
    relaxed = dataclasses.replace(inventory, settings=dataclasses.replace(inventory.settings, secure_mode=False))
    spec = TaskSpec(name="t", usernames=["root", "admin", "alice"], assets=["web1", "aix1"])
    result = preview(relaxed, spec)
    assert [(t.asset_name, t.username, t.privileged) for t in result.targets] == [
        ("aix1", "root", True), ("aix1", "alice", False),
        ("web1", "root", True), ("web1", "admin", True), ("web1", "alice", False),
    ]
    assert [(e.asset_name, e.username, e.reason) for e in result.excluded] == [
        ("aix1", "admin", "no such account on this asset")]
    assert result.summary() == "5 accounts on 2 assets; 1 excluded (1 no such account on this asset)"
    assert preview(relaxed, dataclasses.replace(spec, usernames=["root"])).summary() == \
        "2 accounts on 2 assets; none excluded"
    strict = preview(inventory, spec)
    assert sorted((t.asset_name, t.username) for t in strict.targets) == [("aix1", "alice"), ("web1", "alice")]


def test_ssh_key_tasks_target_key_accounts(inventory: Context) -> None:
    result = preview(inventory, TaskSpec(name="k", usernames=["carol", "alice"], assets=["web1"], secret_type="ssh_key"))
    assert [(t.username, t.secret_type) for t in result.targets] == [("carol", "ssh_key")]
    assert _by_pair(result)[("web1", "alice")] == "no such account on this asset"


def test_unknown_names_are_input_errors_and_the_live_line_shows_them(inventory: Context) -> None:
    spec = TaskSpec(name="t", usernames=["alice"], assets=["nope"], nodes=["/prod"])
    with pytest.raises(InputError, match="^assets: no asset named 'nope'$"):
        preview(inventory, spec)
    assert preview_summary(inventory, spec) == "assets: no asset named 'nope'"
    assert preview_summary(inventory, TaskSpec(name="t", usernames=["alice"], nodes=["/prod/web"])) == \
        "1 account on 1 asset; 1 excluded (1 no privileged account on the asset)"


def test_preview_of_many_assets_takes_a_fixed_number_of_queries(ctx: Context) -> None:
    """The query count does not grow with the fleet (no per-asset query); the time is a benchmark figure."""
    n = 600
    with ctx.db.write() as s:
        node, _ = ensure_node(s, "/fleet/a")
        assets = [Asset(name=f"h{i:05d}", address=f"10.1.{i // 250}.{i % 250}", active=i % 100 != 0) for i in range(n)]
        s.add_all(assets)
        s.flush()
        s.add_all([AssetNode(asset_id=a.id, node_id=node.id) for a in assets])
        s.add_all([Account(asset_id=a.id, username="root", privileged=True) for a in assets])
        s.add_all([Account(asset_id=a.id, username="app", can_change=i % 10 != 0) for i, a in enumerate(assets)])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        result = preview(ctx, TaskSpec(name="big", usernames=["app", "root"], nodes=["/fleet"]))
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    inactive = n // 100
    no_change = len([i for i in range(n) if i % 10 == 0 and i % 100 != 0])
    assert len(result.targets) == n - inactive - no_change
    assert result.reasons()["asset inactive"] == 2 * inactive
    assert result.reasons()["secure mode: the account keyturn logs in with"] == n - inactive
    assert len(statements) <= 20, len(statements)
