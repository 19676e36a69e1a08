"""The command line for database assets: defaults, options, rejections and the preview's per-platform words."""

from __future__ import annotations

import json
from typing import Any


def test_database_asset_add_show_and_rejections(keyturn_cli: Any) -> None:
    out = keyturn_cli("asset", "add", "pg1", "--platform", "postgresql", "--address", "db.example", "--database",
                      "app", "--tls", "verify-full", "--ca-file", "/etc/ssl/ca.pem", check=True).stdout
    assert "db.example:5432" in out and "keyturn account add pg1" in out
    for platform, port in (("mysql", 3306), ("mariadb", 3306), ("redis", 6379)):
        keyturn_cli("asset", "add", f"{platform}1", "--platform", platform, "--address", "db.example", check=True)
    assets = {a["name"]: a for a in json.loads(keyturn_cli("asset", "list", "--json", check=True).stdout)}
    assert assets["pg1"]["database"] == "app" and assets["pg1"]["tls"] == "verify-full"
    assert assets["redis1"]["port"] == 6379 and assets["mysql1"]["port"] == 3306
    show = keyturn_cli("asset", "show", "pg1", check=True).stdout
    assert "database:  app" in show and "ca file:" in show and "not used (database protocol)" in show

    oracle = keyturn_cli("asset", "add", "ora", "--platform", "oracle", "--address", "db.example")
    assert oracle.returncode == 2 and "Oracle is not supported" in oracle.stderr
    rel = keyturn_cli("asset", "add", "pg2", "--platform", "postgresql", "--address", "x", "--tls", "require",
                      "--ca-file", "ca.pem")
    assert rel.returncode == 2 and "ca_file" in rel.stderr
    host_db = keyturn_cli("asset", "add", "web", "--address", "x", "--database", "app")
    assert host_db.returncode == 2 and "database: applies to database assets only" in host_db.stderr
    redis_db = keyturn_cli("asset", "add", "r2", "--platform", "redis", "--address", "x", "--database", "app")
    assert redis_db.returncode == 2 and "database" in redis_db.stderr
    assert "pg2" not in keyturn_cli("asset", "list", check=True).stdout  # nothing half-written


def test_preview_names_platform_entries_and_well_known_admins(keyturn_cli: Any) -> None:
    keyturn_cli("asset", "add", "my1", "--platform", "mariadb", "--address", "db.example", check=True)
    keyturn_cli("asset", "add", "r1", "--platform", "redis", "--address", "db.example", check=True)
    for asset, admin in (("my1", "dba"), ("r1", "ops")):
        keyturn_cli("account", "add", asset, admin, "--password-stdin", "--privileged", input="Adm-pw-12345\n", check=True)
    for asset, user in (("my1", "app"), ("my1", "root"), ("r1", "default"), ("r1", "app")):
        keyturn_cli("account", "add", asset, user, "--password-stdin", input="App-pw-12345\n", check=True)
    keyturn_cli("task", "create", "t", "--accounts", "app,root,default", "--asset", "my1,r1", "--param",
                "account_host=10.0.%", check=True)
    out = keyturn_cli("task", "preview", "t", check=True).stdout
    assert "[mariadb: entry 'app'@'10.0.%']" in out
    assert "[redis: ACL user]" in out
    assert "my1  [mariadb]  root: secure mode: well-known mariadb admin account" in out
    assert "r1  [redis]  default: secure mode: well-known redis admin account" in out
    bad = keyturn_cli("task", "create", "t2", "--accounts", "app", "--asset", "my1", "--param", "account_host=a b")
    assert bad.returncode == 2 and "account_host" in bad.stderr


def test_importers_carry_database_options(tmp_path: Any) -> None:
    import pytest

    from core.errors import InputError
    from core.importer import parse_inventory

    csv_file = tmp_path / "inv.csv"
    csv_file.write_text("asset,address,platform,port,database,tls,ca_file,connect_timeout,username,secret\n"
                        "pg1,db.example,postgresql,,app,verify-full,/etc/ssl/ca.pem,3,app,raw:pw-1\n"
                        "r1,db.example,redis,6380,2,,,,,\n"
                        "web,10.0.0.1,linux,,,,,,,\n")
    inv = {a.name: a for a in parse_inventory(csv_file).assets}
    assert inv["pg1"].port == 5432 and inv["pg1"].options == {
        "database": "app", "tls": "verify-full", "ca_file": "/etc/ssl/ca.pem", "connect_timeout": 3.0,
        "command_timeout": None}
    assert inv["r1"].port == 6380 and inv["r1"].options["database"] == "2"  # type: ignore[index]
    assert inv["web"].port == 22 and inv["web"].options is None

    yaml_file = tmp_path / "inv.yaml"
    yaml_file.write_text("assets:\n  - name: my1\n    address: db.example\n    platform: mariadb\n    tls: require\n")
    [my1] = parse_inventory(yaml_file).assets
    assert my1.port == 3306 and my1.options["tls"] == "require"  # type: ignore[index]

    bad = tmp_path / "bad.csv"
    bad.write_text("asset,address,platform,tls\npg1,db.example,postgresql,sometimes\nora,db.example,oracle,\n")
    with pytest.raises(InputError) as err:
        parse_inventory(bad)
    assert "bad.csv:2: tls: must be one of" in str(err.value)
    assert "bad.csv:3:" in str(err.value) and "Oracle is not supported" in str(err.value)

    ini = tmp_path / "hosts.ini"
    ini.write_text("[db]\npg2 ansible_host=10.0.0.9 keyturn_platform=postgresql keyturn_database=app keyturn_tls=require\n")
    [pg2] = parse_inventory(ini, "ansible").assets
    assert pg2.port == 5432 and pg2.options["database"] == "app"  # type: ignore[index]


def test_trust_refuses_database_assets(keyturn_cli: Any) -> None:
    keyturn_cli("asset", "add", "pgx", "--platform", "postgresql", "--address", "db.example", check=True)
    out = keyturn_cli("asset", "trust", "pgx", "--yes")
    assert out.returncode == 2 and "no SSH host key to pin" in out.stderr
