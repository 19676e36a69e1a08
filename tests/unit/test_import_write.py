"""The import's write step on SQLite and PostgreSQL: bulk statements, one transaction, the same rules as by hand.

What the database holds after an import is read back through the same repository functions the app uses:
secrets decrypt (so each one is sealed to the row it landed in), history keeps replaced secrets, a moved
asset loses its pinned keys, a rotated secret is never silently replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event

from core.context import Context
from core.importer import ImportConflict, import_inventory
from storage import executions as rec
from storage.inventory import (
    BULK_BATCH, account_secrets, counts, get_account_row, get_asset, get_asset_row, list_accounts, list_nodes, pin_host_key,
    secret_history, upsert_account, upsert_asset,
)

pytestmark = pytest.mark.both_backends

HEADER = "asset,address,port,nodes,username,secret,privileged,can_change,become_secret\n"
KEY_B64 = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def secrets_of(ctx: Context, asset: str, username: str):  # noqa: ANN201
    with ctx.db.read() as s:
        acc_id = get_account_row(s, asset, username).id
    return account_secrets(ctx.db, acc_id)


def write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def fleet(n: int) -> list[str]:
    """n assets in two nodes, each with a privileged root and an app account."""
    rows = []
    for i in range(n):
        rows.append(f"h{i},10.0.{i // 250}.{i % 250},22,/fleet/g{i % 2},root,Root-{i}-pw,true,false,Sudo-{i}")
        rows.append(f"h{i},,,,app,App-{i}-pw,,,")
    return rows


def count_statements(ctx: Context, action) -> int:  # noqa: ANN001
    """How many SQL statements action sends to the database."""
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", before)
    try:
        action()
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", before)
    return len(seen)


def test_import_writes_every_row_and_seals_each_secret_to_its_row(ctx: Context, tmp_path: Path) -> None:
    summary = import_inventory(ctx.db, write(tmp_path / "inv.csv", fleet(30)))
    assert (summary.nodes_created, summary.assets_created, summary.accounts_created) == (3, 30, 60)
    assert [n.path for n in list_nodes(ctx.db)] == ["/fleet", "/fleet/g0", "/fleet/g1"]
    h7 = get_asset(ctx.db, "h7")
    assert (h7.address, h7.port, h7.nodes, h7.active) == ("10.0.0.7", 22, ("/fleet/g1",), True)
    root = secrets_of(ctx, "h7", "root")
    assert (root.secret, root.passphrase, root.become) == ("Root-7-pw", None, "Sudo-7")
    assert secrets_of(ctx, "h29", "app").secret == "App-29-pw"
    accounts = {(a.asset_name, a.username): a for a in list_accounts(ctx.db)}
    assert accounts[("h7", "root")].privileged and not accounts[("h7", "root")].can_change
    assert accounts[("h7", "app")].can_change and not accounts[("h7", "app")].privileged
    assert {a.version for a in accounts.values()} == {1}


def test_reimport_changes_nothing(ctx: Context, tmp_path: Path) -> None:
    inv = write(tmp_path / "inv.csv", fleet(10))
    import_inventory(ctx.db, inv)
    again = import_inventory(ctx.db, inv)
    assert not again.changed and again.unchanged == 30
    assert [v for v, _t, _s in secret_history(ctx.db, secrets_of(ctx, "h3", "root").account_id)] == []


def test_the_number_of_statements_does_not_grow_with_the_file(ctx: Context, tmp_path: Path) -> None:
    small = write(tmp_path / "small.csv", fleet(5))
    large = write(tmp_path / "large.csv", [r.replace("h", "big", 1) for r in fleet(1500)])
    small_count = count_statements(ctx, lambda: import_inventory(ctx.db, small))
    large_count = count_statements(ctx, lambda: import_inventory(ctx.db, large))
    # 4,500 rows in batches of BULK_BATCH: a handful of statements per batch, never one per line.
    assert large_count <= small_count + 12 * (4500 // min(BULK_BATCH, 500) + 1), (small_count, large_count)
    assert counts(ctx.db) == {"nodes": 3, "assets": 1505, "accounts": 3010}
    assert secrets_of(ctx, "big1499", "app").secret == "App-1499-pw"


def test_changes_update_in_place_keep_history_and_a_moved_asset_loses_its_host_keys(ctx: Context, tmp_path: Path) -> None:
    inv = write(tmp_path / "inv.csv", ["web1,10.0.0.5,22,/prod,root,First-pw-1,true,,Sudo-1",
                                       "web2,10.0.0.6,22,/prod,root,Two-pw-1,true,,"])
    import_inventory(ctx.db, inv)
    with ctx.db.write() as s:
        for name in ("web1", "web2"):
            pin_host_key(s, get_asset_row(s, name), "ssh-ed25519", KEY_B64, "trust")
    web1_id = get_asset(ctx.db, "web1").id
    write(inv, ["web1,10.0.0.50,22,/prod;/eu,root,Second-pw-2,false,false,Sudo-2",
                "web2,10.0.0.6,22,/prod;/eu,root,Two-pw-1,true,,"])
    summary = import_inventory(ctx.db, inv)
    assert (summary.assets_updated, summary.accounts_updated, summary.unchanged, summary.nodes_created) == (2, 1, 1, 1)
    web1, web2 = get_asset(ctx.db, "web1"), get_asset(ctx.db, "web2")
    assert (web1.id, web1.address, web1.nodes, web1.host_keys) == (web1_id, "10.0.0.50", ("/eu", "/prod"), ())
    # Only nodes were added to web2: its address did not move, so its pinned key stays.
    assert web2.nodes == ("/eu", "/prod") and len(web2.host_keys) == 1
    root = secrets_of(ctx, "web1", "root")
    assert (root.secret, root.become) == ("Second-pw-2", "Sudo-2")
    assert [(v, s) for v, _t, s in secret_history(ctx.db, root.account_id)] == [(1, "First-pw-1")]
    info = {(a.asset_name, a.username): a for a in list_accounts(ctx.db)}[("web1", "root")]
    assert (info.version, info.privileged, info.can_change) == (2, False, False)


def test_rows_added_by_hand_after_an_import_get_new_ids(ctx: Context, tmp_path: Path) -> None:
    import_inventory(ctx.db, write(tmp_path / "inv.csv", fleet(3)))
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "by-hand", address="10.9.9.9", nodes=["/fleet/g0", "/other"])
        upsert_account(ctx.db, s, asset, "root", secret="Hand-pw-1")
    import_inventory(ctx.db, write(tmp_path / "more.csv", [r.replace("h", "more", 1) for r in fleet(3)]))
    assert counts(ctx.db) == {"nodes": 4, "assets": 7, "accounts": 13}
    assert secrets_of(ctx, "by-hand", "root").secret == "Hand-pw-1"
    assert secrets_of(ctx, "more2", "root").secret == "Root-2-pw"


def _rotate(ctx: Context, asset: str, username: str, new: str) -> None:
    """What a successful keyturn rotation writes: a record settled success (the vault takes the new secret)."""
    with ctx.db.read() as s:
        acc_id = get_account_row(s, asset, username).id
    ex = rec.create_execution(ctx.db, task_id=None, task_name="rot", trigger="cli", operator="t", snapshot={},
                              pid=1, hostname="h")
    [rid] = rec.add_pending_records(ctx.db, ex, [rec.PendingItem(acc_id, new)])
    rec.mark_pushing(ctx.db, rid)
    assert rec.settle_success(ctx.db, rid)


def test_a_rotated_secret_is_a_conflict_and_nothing_of_the_file_is_written(ctx: Context, tmp_path: Path) -> None:
    inv = write(tmp_path / "inv.csv", fleet(4))
    import_inventory(ctx.db, inv)
    _rotate(ctx, "h2", "root", "Rotated-pw-9")
    write(inv, [*fleet(4), "new1,10.1.1.1,22,/elsewhere,root,New-pw-1,,,"])
    with pytest.raises(ImportConflict) as err:
        import_inventory(ctx.db, inv)
    assert f"{inv}:6: h2/root: keyturn rotated this secret on " in str(err.value)
    assert "h1/root" not in str(err.value) and "Rotated-pw-9" not in str(err.value)
    assert secrets_of(ctx, "h2", "root").secret == "Rotated-pw-9"
    assert counts(ctx.db) == {"nodes": 3, "assets": 4, "accounts": 8}

    summary = import_inventory(ctx.db, inv, overwrite_rotated=True)
    assert (summary.assets_created, summary.accounts_created, summary.accounts_updated) == (1, 1, 1)
    root = secrets_of(ctx, "h2", "root")
    assert root.secret == "Root-2-pw"
    assert [s for _v, _t, s in secret_history(ctx.db, root.account_id)][:1] == ["Rotated-pw-9"]


def test_the_same_secret_as_the_rotated_one_is_no_conflict(ctx: Context, tmp_path: Path) -> None:
    inv = write(tmp_path / "inv.csv", fleet(2))
    import_inventory(ctx.db, inv)
    _rotate(ctx, "h1", "root", "Rotated-pw-9")
    write(inv, [r.replace("Root-1-pw", "Rotated-pw-9") for r in fleet(2)])
    assert not import_inventory(ctx.db, inv).changed


def test_the_audit_event_commits_with_the_import_or_not_at_all(ctx: Context, tmp_path: Path) -> None:
    inv = write(tmp_path / "inv.csv", fleet(2))

    def refuse(_session, _summary) -> None:  # noqa: ANN001
        raise RuntimeError("audit trail cannot be written")

    with pytest.raises(RuntimeError):
        import_inventory(ctx.db, inv, before_commit=refuse)
    assert counts(ctx.db) == {"nodes": 0, "assets": 0, "accounts": 0}


def test_imported_rows_hold_what_adding_by_hand_writes(ctx: Context, tmp_path: Path) -> None:
    """Every column of an imported asset and account, against the same one added through the ORM.

    The bulk write names its columns itself; a column added to these tables later must get its value here too.
    """
    from sqlalchemy import select

    from storage.tables import Account, Asset

    import_inventory(ctx.db, write(tmp_path / "inv.csv", ["bulk,10.0.0.5,2222,/p,root,Same-pw-1,true,false,Sudo-1"]))
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "orm", address="10.0.0.5", port=2222, nodes=["/p"])
        upsert_account(ctx.db, s, asset, "root", secret="Same-pw-1", become="Sudo-1", privileged=True, can_change=False)
    skip = {"id", "name", "asset_id", "secret_enc", "become_secret_enc", "created_at", "updated_at", "last_changed_at"}
    with ctx.db.read() as s:
        for table, key in ((Asset.__table__, "name"), (Account.__table__, None)):
            rows = {r.asset_id if key is None else r.name: r._mapping
                    for r in s.execute(select(table).order_by(table.c.id))}
            bulk, orm = list(rows.values())
            assert {c: v for c, v in bulk.items() if c not in skip} == {c: v for c, v in orm.items() if c not in skip}
            assert {c for c, v in bulk.items() if v is None} == {c for c, v in orm.items() if v is None}


def test_database_options_and_gateways_are_written_as_by_hand(ctx: Context, tmp_path: Path) -> None:
    from storage.inventory import NotFound

    inv = tmp_path / "db.csv"
    inv.write_text("asset,address,platform,port,database,tls,ca_file,connect_timeout,gateway,username,secret\n"
                   "jump,10.0.0.1,linux,,,,,,,root,Jump-pw-1\n"
                   "pg1,db.internal,postgresql,,app,verify-full,/etc/ssl/ca.pem,3,jump,app,Pg-pw-1\n"
                   "r1,cache.internal,redis,6380,2,,,,,,\n")
    summary = import_inventory(ctx.db, inv)
    assert (summary.assets_created, summary.accounts_created) == (3, 2)
    pg1, r1, jump = get_asset(ctx.db, "pg1"), get_asset(ctx.db, "r1"), get_asset(ctx.db, "jump")
    assert (pg1.port, pg1.database, pg1.tls, pg1.ca_file, pg1.connect_timeout, pg1.gateway) == (
        5432, "app", "verify-full", "/etc/ssl/ca.pem", 3.0, "jump")
    assert (r1.port, r1.database, r1.gateway, jump.database, jump.gateway_id) == (6380, "2", "", "", None)
    assert not import_inventory(ctx.db, inv).changed

    inv.write_text(inv.read_text().replace("verify-full,/etc/ssl/ca.pem,3,jump", "require,,,"))
    assert import_inventory(ctx.db, inv).assets_updated == 1
    pg1 = get_asset(ctx.db, "pg1")
    # An empty gateway cell says nothing about the gateway (as `asset edit` without --gateway): it stays.
    assert (pg1.tls, pg1.ca_file, pg1.connect_timeout, pg1.gateway) == ("require", "", None, "jump")

    later = tmp_path / "later.csv"
    later.write_text("asset,address,platform,gateway\npg2,db2.internal,postgresql,jump2\njump2,10.0.0.2,linux,\n")
    with pytest.raises(NotFound, match="gateway: no asset named 'jump2'"):
        import_inventory(ctx.db, later)
    assert counts(ctx.db)["assets"] == 3
