"""Inventory import from real files in tests/data/inventory: every format, idempotence, updates, bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.context import Context
from core.errors import InputError
from core.hostkeys import import_known_hosts, parse_known_hosts
from core.importer import describe_summary, import_inventory, parse_inventory
from storage.inventory import (
    account_secrets, counts, get_account_row, get_asset, list_accounts, list_assets, list_nodes, secret_history,
    upsert_asset,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "inventory"
ENV = {"KT_TEST_APP_PW": "Kt-env-app-4242", "KT_TEST_BECOME": "Kt-env-become-77"}


def dump(ctx: Context) -> list[str]:
    """Every row of the database as SQL text (what a backup would hold)."""
    con = sqlite3.connect(ctx.settings.db_path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def secrets_of(ctx: Context, asset: str, username: str, secret_type: str | None = None):
    with ctx.db.read() as s:
        acc_id = get_account_row(s, asset, username, secret_type).id
    return account_secrets(ctx.db, acc_id)


def accounts_by_key(ctx: Context) -> dict[tuple[str, str, str], object]:
    return {(a.asset_name, a.username, a.secret_type): a for a in list_accounts(ctx.db)}


# -- each format ---------------------------------------------------------------------------------------
def test_csv_creates_nodes_assets_and_accounts(ctx: Context) -> None:
    summary = import_inventory(ctx.db, DATA / "fleet.csv", env=ENV)
    assert (summary.assets_created, summary.accounts_created, summary.nodes_created) == (4, 5, 4)
    assert [n.path for n in list_nodes(ctx.db)] == ["/eu", "/prod", "/prod/db", "/prod/web"]
    assets = {a.name: a for a in list_assets(ctx.db)}
    assert (assets["web1"].address, assets["web1"].port, assets["web1"].nodes) == ("10.0.0.5", 22, ("/eu", "/prod/web"))
    assert (assets["web2"].port, assets["db1"].nodes, assets["spare"].platform) == (2222, ("/eu", "/prod/db"), "unix")
    accounts = accounts_by_key(ctx)
    root = accounts[("web1", "root", "password")]
    assert root.privileged and not root.can_change and root.has_secret
    assert not accounts[("web1", "deploy", "ssh_key")].privileged
    assert secrets_of(ctx, "web1", "root").secret == "Kt-csv-root-5521"
    # env: and file: references are resolved at import time; a file's trailing newline is not part of it.
    assert secrets_of(ctx, "web1", "app").secret == "Kt-env-app-4242"
    assert secrets_of(ctx, "db1", "postgres").secret == "Kt-file-secret-7781"
    assert secrets_of(ctx, "web1", "deploy").secret == (DATA / "keys" / "deploy_ed25519").read_text()
    assert secrets_of(ctx, "web2", "admin").become == "Kt-csv-sudo-6633"


def test_keyturn_yaml(ctx: Context) -> None:
    summary = import_inventory(ctx.db, DATA / "fleet.yaml", env=ENV)
    assert (summary.assets_created, summary.accounts_created) == (3, 3)
    app1 = get_asset(ctx.db, "app1")
    assert (app1.address, app1.port, app1.nodes) == ("192.0.2.10", 2200, ("/eu", "/stage/app"))
    assert get_asset(ctx.db, "cache1").platform == "redis"
    root = secrets_of(ctx, "app1", "root")
    assert (root.secret, root.become) == ("Kt-yaml-root-1187", "Kt-env-become-77")
    key = secrets_of(ctx, "app1", "deploy", "ssh_key")
    assert key.secret == (DATA / "keys" / "admin_ed25519_enc").read_text()
    assert key.passphrase == "Kt-key-phrase-4419"
    # An unquoted 0123 is YAML 1.1 octal (83); a password must stay what was typed.
    assert secrets_of(ctx, "app2", "svc").secret == "0123"


def test_ansible_ini_groups_become_nested_nodes(ctx: Context) -> None:
    import_inventory(ctx.db, DATA / "hosts.ini")
    assert [n.path for n in list_nodes(ctx.db)] == ["/prod", "/prod/db", "/prod/web"]
    assets = {a.name: a for a in list_assets(ctx.db)}
    assert set(assets) == {"loose1", "web01.example.com", "web02.example.com", "db1.example.com"}
    assert assets["loose1"].nodes == () and assets["loose1"].address == "198.51.100.1"
    assert assets["web02.example.com"].nodes == ("/prod/web",)
    db1 = assets["db1.example.com"]
    assert (db1.address, db1.port, db1.nodes) == ("198.51.100.20", 2022, ("/prod/db",))
    accounts = accounts_by_key(ctx)
    # host vars beat [prod:vars] ansible_user=ops; ansible_user + password/key file = privileged account
    assert accounts[("web01.example.com", "deploy", "password")].privileged
    admin = accounts[("db1.example.com", "admin", "ssh_key")]
    assert admin.privileged and admin.has_secret
    secrets = secrets_of(ctx, "db1.example.com", "admin")
    assert secrets.secret == (DATA / "keys" / "deploy_ed25519").read_text()
    assert secrets.become == "Kt-ini-become-9902"  # from [db:vars]
    assert secrets_of(ctx, "web01.example.com", "deploy").secret == "Kt-ini-web-3341"
    with ctx.db.read() as s:
        row = get_account_row(s, "db1.example.com", "admin")
        assert row.become_secret_enc is not None and b"Kt-ini-become" not in row.become_secret_enc


def test_ansible_yaml_groups_vars_and_children(ctx: Context) -> None:
    summary = import_inventory(ctx.db, DATA / "hosts.yml")
    assert summary.assets_created == 3
    assert [n.path for n in list_nodes(ctx.db)] == ["/prod", "/prod/db", "/prod/web", "/staging"]
    assets = {a.name: a for a in list_assets(ctx.db)}
    assert assets["lonely.example.com"].nodes == ()
    assert assets["www1"].nodes == ("/prod/web", "/staging")
    assert (assets["pg1"].address, assets["pg1"].port) == ("203.0.113.21", 5022)
    accounts = accounts_by_key(ctx)
    # ansible_user from all: vars, with no password or key: known as the privileged login, without a secret
    lonely = accounts[("lonely.example.com", "root", "password")]
    assert lonely.privileged and not lonely.has_secret
    pg1 = secrets_of(ctx, "pg1", "root")
    assert (pg1.secret, pg1.become) == ("Kt-ay-pg1-2718", "Kt-ay-become-5150")
    assert secrets_of(ctx, "www1", "www").secret == "Kt-ay-www1-3141"


def test_yaml_kind_is_told_by_content(ctx: Context) -> None:
    assert parse_inventory(DATA / "fleet.yaml", env=ENV).format == "yaml"
    assert parse_inventory(DATA / "hosts.yml").format == "ansible"
    with pytest.raises(InputError, match=r"fleet\.yaml:2: not an Ansible YAML inventory"):
        parse_inventory(DATA / "fleet.yaml", "ansible", env=ENV)


# -- idempotence and updates ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fleet.csv", "fleet.yaml", "hosts.ini", "hosts.yml"])
def test_reimport_changes_nothing(ctx: Context, name: str) -> None:
    first = import_inventory(ctx.db, DATA / name, env=ENV)
    before = dump(ctx)
    second = import_inventory(ctx.db, DATA / name, env=ENV)
    assert first.changed and not second.changed
    assert second.unchanged == first.assets_created + first.accounts_created
    assert describe_summary(second).startswith("nothing changed")
    assert dump(ctx) == before


def test_changed_row_updates_in_place_and_keeps_history(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text("asset,address,port,nodes,username,secret\nweb1,10.0.0.5,22,/prod,root,Kt-first-1111\n")
    import_inventory(ctx.db, inv)
    asset_id = get_asset(ctx.db, "web1").id
    inv.write_text("asset,address,port,nodes,username,secret\nweb1,10.0.0.50,2200,/prod;/eu,root,Kt-second-2222\n")
    summary = import_inventory(ctx.db, inv)
    assert (summary.assets_updated, summary.accounts_updated, summary.assets_created, summary.accounts_created) == (1, 1, 0, 0)
    web1 = get_asset(ctx.db, "web1")
    assert (web1.id, web1.address, web1.port, web1.nodes) == (asset_id, "10.0.0.50", 2200, ("/eu", "/prod"))
    secrets = secrets_of(ctx, "web1", "root")
    assert secrets.secret == "Kt-second-2222"
    assert [(v, s) for v, _when, s in secret_history(ctx.db, secrets.account_id)] == [(1, "Kt-first-1111")]
    assert counts(ctx.db) == {"nodes": 2, "assets": 1, "accounts": 1}


def test_import_keeps_an_asset_inactive_unless_the_file_says(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text("asset,address\nweb1,10.0.0.5\n")
    import_inventory(ctx.db, inv)
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.0.0.5", active=False)
    assert not import_inventory(ctx.db, inv).changed
    assert get_asset(ctx.db, "web1").active is False
    inv.write_text("asset,address,active\nweb1,10.0.0.5,yes\n")
    assert import_inventory(ctx.db, inv).assets_updated == 1
    assert get_asset(ctx.db, "web1").active is True


def test_raw_prefix_keeps_a_secret_that_looks_like_a_reference(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text("asset,address,username,secret\nweb1,10.0.0.5,root,raw:env:HOME\n")
    import_inventory(ctx.db, inv, env={"HOME": "/root"})
    assert secrets_of(ctx, "web1", "root").secret == "env:HOME"


# -- bad files -------------------------------------------------------------------------------------------
BAD = [
    ("bad_port.csv", 3, "port: 'ssh' is not a number"),
    ("unknown_platform.csv", 4, "unknown platform 'beos'"),
    ("unknown_secret_type.csv", 3, "unknown secret type 'certificate'"),
    ("missing_address.csv", 3, "has no address"),
    ("duplicate_account.csv", 4, "duplicate account 'root'"),
    ("missing_env.csv", 3, "environment variable KT_TEST_SURELY_UNSET_VAR is not set"),
    ("missing_file.csv", 3, "file no-such-secret.txt does not exist"),
    ("bad_key.csv", 3, "not a readable private key"),
    ("unknown_column.csv", 1, "unknown column(s) 'colour'"),
    ("no_asset_column.csv", 1, "no 'asset' column"),
    ("malformed.yaml", 9, "malformed YAML"),
    ("bad_port.yaml", 9, "port: '70000' is not a number"),
    ("unknown_key.yaml", 4, "unknown asset key 'adress'"),
    ("bad_port.ini", 3, "port: 'twenty-two' is not a number"),
    ("unreadable_keyfile.ini", 5, "file ../keys/missing_key does not exist"),
    ("bad_section.ini", 4, "unknown section type ':hostvars'"),
    ("template.yml", 8, "is a template"),
]


@pytest.mark.parametrize(("name", "line", "text"), BAD)
def test_bad_file_names_the_line_and_writes_nothing(ctx: Context, name: str, line: int, text: str) -> None:
    import_inventory(ctx.db, DATA / "fleet.csv", env=ENV)
    before = dump(ctx)
    path = DATA / "bad" / name
    with pytest.raises(InputError) as err:
        import_inventory(ctx.db, path, env={})
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert text in message
    assert "Kt-bad-never-stored" not in message
    assert dump(ctx) == before


def test_every_bad_line_is_reported_at_once(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text("asset,address,port,platform\na,10.0.0.1,0,linux\nb,10.0.0.2,22,plan9\nc,,22,linux\n")
    with pytest.raises(InputError) as err:
        import_inventory(ctx.db, inv)
    lines = str(err.value).splitlines()
    assert [ln.split(": ", 1)[0] for ln in lines[:3]] == [f"{inv}:2", f"{inv}:3", f"{inv}:4"]
    assert counts(ctx.db) == {"nodes": 0, "assets": 0, "accounts": 0}


def test_a_key_file_without_its_passphrase_is_refused(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text(f"asset,address,username,secret_type,secret\nweb1,10.0.0.5,deploy,ssh_key,file:{DATA}/keys/admin_ed25519_enc\n")
    with pytest.raises(InputError, match=r"inv\.csv:2: .*encrypted and no passphrase"):
        import_inventory(ctx.db, inv)


def test_ansible_ini_host_ranges_and_host_port(ctx: Context, tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("[app]\napp-[a:c] ansible_user=root\nweb[08:10].example.com:2222\n")
    import_inventory(ctx.db, inv)
    assets = {a.name: a for a in list_assets(ctx.db)}
    assert sorted(assets) == ["app-a", "app-b", "app-c", "web08.example.com", "web09.example.com", "web10.example.com"]
    assert assets["web09.example.com"].port == 2222 and assets["app-b"].nodes == ("/app",)


# -- known_hosts (the live-server side is in tests/integration/test_hostkeys.py) -------------------------
def test_known_hosts_malformed_line_writes_nothing(ctx: Context) -> None:
    import_inventory(ctx.db, DATA / "fleet.csv", env=ENV)  # 10.0.0.5 = web1, first line would pin onto it
    before = dump(ctx)
    path = DATA / "bad" / "known_hosts_malformed"
    with pytest.raises(InputError, match=rf"^{path}:3: "):
        import_known_hosts(ctx.db, path)
    assert dump(ctx) == before


def test_known_hosts_skips_unknown_hosts_and_reports_them(ctx: Context, tmp_path: Path) -> None:
    import_inventory(ctx.db, DATA / "fleet.csv", env=ENV)
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    kh = tmp_path / "known_hosts"
    kh.write_text(f"10.0.0.5,web1 ssh-ed25519 {key}\n[10.0.0.6]:2222 ssh-ed25519 {key}\n10.0.0.6 ssh-ed25519 {key}\n"
                  f"elsewhere.example ssh-ed25519 {key}\n")
    summary = import_known_hosts(ctx.db, kh)
    # web2 listens on 2222, so only the [addr]:port line names it
    assert summary.host_keys_pinned == 2
    assert [k.key_base64 for k in get_asset(ctx.db, "web2").host_keys] == [key]
    skipped = [m for m in summary.messages if "skipped" in m]
    assert [m.split(": ")[0] for m in skipped] == [f"{kh}:3", f"{kh}:4"]
    assert not import_known_hosts(ctx.db, kh).changed


def test_parse_known_hosts_rejects_a_key_of_the_wrong_type() -> None:
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    with pytest.raises(InputError, match=r"^kh:2: the key says it is 'ssh-ed25519'"):
        parse_known_hosts(f"# c\nhost ssh-rsa {key}\n", "kh")


def test_known_hosts_skips_key_types_keyturn_does_not_pin(ctx: Context, tmp_path: Path) -> None:
    import base64
    import struct

    import_inventory(ctx.db, DATA / "fleet.csv", env=ENV)
    blob = base64.b64encode(struct.pack(">I", 12) + b"ssh-future99" + b"\x00" * 8).decode()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@cert-authority *.example.com ssh-future99 {blob}\n10.0.0.5 ssh-future99 {blob}\n")
    summary = import_known_hosts(ctx.db, kh)
    assert not summary.changed
    assert summary.messages == [f"{kh}:1: skipped: @cert-authority lines are not pinned",
                                f"{kh}:2: skipped: key type ssh-future99 is not one keyturn pins"]
