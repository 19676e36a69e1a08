"""Database rotations end to end against private PostgreSQL, MariaDB and Redis servers (tests/dbservers.py).

Each test makes its own roles/users with fresh names on the session's servers, builds its inventory in a fresh
keyturn database, runs the real engine, and then asks the server itself which password works.
"""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import pytest

from core.context import Context
from core.engine import run_task
from core.reconcile import reconcile
from core.tasks import create_task
from storage import executions as rec
from storage.inventory import account_secrets, get_account_row, upsert_account, upsert_asset
from storage.types import HostParams, TaskSpec
from tests.integration.conftest import ProcSampler

# Every symbol class a password can hold that a careless driver would mangle: quotes, backslash, %, $,
# template braces, spaces.
NASTY = "a'b\"c\\d%e$f{{g}} h`i;--j"
_names = itertools.count(1)


def fresh(prefix: str) -> str:
    """A role / user name no other test uses."""
    return f"{prefix}{os.getpid()}_{next(_names)}"


def db_asset(ctx: Context, name: str, platform: str, server: Any, *, admin_user: str | None = None,
             admin_password: str | None = None, accounts: dict[str, str], options: dict | None = None) -> None:
    """A database asset with its admin (privileged) and the accounts to change, in one transaction."""
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, name, address="127.0.0.1", port=server.port, platform=platform,
                                options=options or {})
        upsert_account(ctx.db, s, asset, admin_user or server.admin_user,
                       secret=admin_password or server.admin_password, privileged=True)
        for user, pw in accounts.items():
            upsert_account(ctx.db, s, asset, user, secret=pw)


def vault_secret(ctx: Context, asset: str, user: str) -> str:
    """The account's current password in the vault."""
    with ctx.db.read() as s:
        acc = get_account_row(s, asset, user, "password")
    secret = account_secrets(ctx.db, acc.id).secret
    assert secret is not None
    return secret


def task(ctx: Context, name: str, users: list[str], assets: list[str], **kw: Any) -> TaskSpec:
    """Create a task over users on assets."""
    return create_task(ctx, TaskSpec(name=name, usernames=users, assets=assets, **kw))


def statuses(ctx: Context, execution_id: int) -> dict[str, tuple[str, str]]:
    """username -> (status, error) of an execution's records."""
    return {r.username: (r.status, r.error) for r in rec.list_records(ctx.db, execution_id=execution_id)}


SERVERS = {"postgresql": "pg_private", "mariadb": "mariadb_private", "mysql": "mariadb_private", "redis": "redis_private"}


def make_user(server: Any, platform: str, name: str, password: str) -> None:
    """Create a role / user that can log in with password."""
    if platform == "postgresql":
        server.create_role(name, password)
    elif platform == "redis":
        server.create_user(name, password)
    else:
        server.create_user(name, password)


# -- end to end per platform -------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", ["postgresql", "mariadb", "mysql", "redis"])
@pytest.mark.parametrize("strategy", ["random", "specific"])
def test_rotation_old_stops_new_works(ctx: Context, request: pytest.FixtureRequest, platform: str,
                                      strategy: str) -> None:
    server = request.getfixturevalue(SERVERS[platform])
    users = [fresh("u"), fresh("u")]
    old = {u: f"old-{u}-{NASTY}" for u in users}
    for u in users:
        make_user(server, platform, u, old[u])
    db_asset(ctx, "db1", platform, server, accounts=old)
    kw: dict[str, Any] = {}
    if strategy == "specific":
        kw = {"secret_strategy": "specific", "specific_secret": "new-" + NASTY}
    spec = task(ctx, "t", users, ["db1"], **kw)
    info = run_task(ctx, spec.name)
    assert info.succeeded == 2, statuses(ctx, info.id)
    for u in users:
        new = vault_secret(ctx, "db1", u)
        assert new != old[u]
        if strategy == "specific":
            assert new == "new-" + NASTY
        assert server.can_login(u, new), f"{platform}/{u}: the vault's new password does not work"
        assert not server.can_login(u, old[u]), f"{platform}/{u}: the old password still works"


def test_random_passwords_with_every_symbol(ctx: Context, pg_private: Any, mariadb_private: Any,
                                            redis_private: Any) -> None:
    from storage.types import PasswordRules

    rules = PasswordRules(length=40, symbols=True)
    cases = [("postgresql", pg_private), ("mariadb", mariadb_private), ("redis", redis_private)]
    assets = []
    user_of = {}
    for platform, server in cases:
        u = fresh("sym")
        make_user(server, platform, u, "start-" + NASTY)
        db_asset(ctx, f"sym-{platform}", platform, server, accounts={u: "start-" + NASTY})
        assets.append(f"sym-{platform}")
        user_of[platform] = u
    for round_ in range(3):
        for platform, server in cases:
            spec = task(ctx, f"sym-{platform}-{round_}", [user_of[platform]], [f"sym-{platform}"], rules=rules)
            info = run_task(ctx, spec.name)
            assert info.succeeded == 1, statuses(ctx, info.id)
            assert server.can_login(user_of[platform], vault_secret(ctx, f"sym-{platform}", user_of[platform]))


def test_missing_role_fails_cleanly(ctx: Context, pg_private: Any, mariadb_private: Any, redis_private: Any) -> None:
    ghost = fresh("ghost")
    for platform, server in (("postgresql", pg_private), ("mariadb", mariadb_private), ("redis", redis_private)):
        db_asset(ctx, f"g-{platform}", platform, server, accounts={ghost: "whatever-1"})
        info = run_task(ctx, task(ctx, f"g-{platform}", [ghost], [f"g-{platform}"]).name)
        status, error = statuses(ctx, info.id)[ghost]
        assert status == "failed" and "does not exist" in error, (platform, status, error)
        assert vault_secret(ctx, f"g-{platform}", ghost) == "whatever-1"
    # Redis's SETUSER would have created the user: it must not exist now.
    assert redis_private.admin().execute_command("ACL", "GETUSER", ghost) is None


def test_admin_lacking_rights(ctx: Context, pg_private: Any, mariadb_private: Any, redis_private: Any) -> None:
    weak, victim = fresh("weak"), fresh("victim")
    pg_private.create_role(weak, "weak-pw-1")
    pg_private.create_role(victim, "victim-pw-1")
    mariadb_private.create_user(weak, "weak-pw-1")
    mariadb_private.create_user(victim, "victim-pw-1")
    redis_private.create_user(weak, "weak-pw-1", "~* +@read")
    redis_private.create_user(victim, "victim-pw-1")
    for platform, server in (("postgresql", pg_private), ("mariadb", mariadb_private), ("redis", redis_private)):
        name = f"w-{platform}"
        db_asset(ctx, name, platform, server, admin_user=weak, admin_password="weak-pw-1",
                 accounts={victim: "victim-pw-1"})
        info = run_task(ctx, task(ctx, name, [victim], [name]).name)
        status, error = statuses(ctx, info.id)[victim]
        assert status == "failed", (platform, status, error)
        assert error, platform
        assert server.can_login(victim, "victim-pw-1"), f"{platform}: the victim's password changed"
        assert vault_secret(ctx, name, victim) == "victim-pw-1"


def test_mysql_account_host_and_all_hosts(ctx: Context, mariadb_private: Any) -> None:
    u = fresh("mh")
    hosts = ("%", "10.9.8.%")
    mariadb_private.create_user(u, "start-pw-1", hosts)
    before = mariadb_private.auth_strings(u)
    db_asset(ctx, "mh1", "mariadb", mariadb_private, accounts={u: "start-pw-1"})
    # The default account_host '%': only that entry changes.
    one = task(ctx, "one", [u], ["mh1"])
    assert run_task(ctx, one.name).succeeded == 1
    after_one = mariadb_private.auth_strings(u)
    assert after_one["%"] != before["%"] and after_one["10.9.8.%"] == before["10.9.8.%"]
    # An entry no login from here can reach is refused up front: nothing could verify it.
    other = task(ctx, "other", [u], ["mh1"], params=HostParams(account_host="10.9.8.%"))
    info = run_task(ctx, other.name)
    status, error = statuses(ctx, info.id)[u]
    assert status == "failed" and "all_hosts=true" in error
    assert mariadb_private.auth_strings(u) == after_one
    # all_hosts: every entry now holds the vault's password.
    mariadb_private.create_user(u + "x", "p-1")  # another user name is left alone
    every = task(ctx, "every", [u], ["mh1"], params=HostParams(all_hosts=True))
    assert run_task(ctx, every.name).succeeded == 1
    from core.drivers.mysql import native_hash

    want = native_hash(vault_secret(ctx, "mh1", u))
    assert mariadb_private.auth_strings(u) == {h: want for h in hosts}
    assert mariadb_private.can_login(u, vault_secret(ctx, "mh1", u))
    assert mariadb_private.can_login(u + "x", "p-1")


def test_mariadb_ed25519_user(ctx: Context, mariadb_private: Any) -> None:
    conn = mariadb_private.admin()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'")
        if not cur.fetchone()[0]:
            cur.execute("INSTALL SONAME 'auth_ed25519'")
        u = fresh("ed")
        cur.execute("CREATE USER %s@'%%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-start-1')", (u,))
    conn.close()
    db_asset(ctx, "ed1", "mariadb", mariadb_private, accounts={u: "ed-start-1"})
    assert run_task(ctx, task(ctx, "ed", [u], ["ed1"]).name).succeeded == 1
    assert mariadb_private.can_login(u, vault_secret(ctx, "ed1", u))
    assert not mariadb_private.can_login(u, "ed-start-1")
    with mariadb_private.admin().cursor() as cur:
        cur.execute("SELECT plugin FROM mysql.user WHERE User = %s", (u,))
        assert cur.fetchone()[0] == "ed25519"


def test_trust_auth_is_unverified(ctx: Context, pg_private: Any, redis_private: Any) -> None:
    u = fresh("trusted")
    pg_private.create_role(u, "trust-pw-1")
    pg_private.trust(u)
    try:
        db_asset(ctx, "tr-pg", "postgresql", pg_private, accounts={u: "trust-pw-1"})
        info = run_task(ctx, task(ctx, "tr-pg", [u], ["tr-pg"]).name)
    finally:
        pg_private.trust(None)
    status, error = statuses(ctx, info.id)[u]
    assert status == "unverified" and "trust" in error, (status, error)
    # Redis: a nopass user lets any password in; the rotation resets it, and the probe must not call the
    # pre-existing nopass state a success before the change took.
    r = fresh("np")
    redis_private.create_user(r, "np-pw-1", "nopass ~x:* +get")
    client = redis_private.admin()
    client.execute_command("ACL", "SETUSER", r, "nopass")
    db_asset(ctx, "tr-redis", "redis", redis_private, accounts={r: "np-pw-1"})
    from core.drivers.base import verify_password
    from storage.inventory import get_asset

    v = verify_password(get_asset(ctx.db, "tr-redis"), r, "anything-at-all")
    assert not v.ok and "trust" in v.reason


def test_secure_mode_leaves_well_known_admins(ctx: Context, pg_private: Any, mariadb_private: Any,
                                              redis_private: Any) -> None:
    from core.targets import preview

    db_asset(ctx, "sm-pg", "postgresql", pg_private, admin_user=pg_private.admin_user, accounts={})
    with ctx.db.write() as s:
        from storage.inventory import get_asset_row

        upsert_account(ctx.db, s, get_asset_row(s, "sm-pg"), "postgres", secret="x")
    db_asset(ctx, "sm-redis", "redis", redis_private, accounts={"default": redis_private.default_password})
    spec = task(ctx, "sm", ["postgres", "default"], ["sm-pg", "sm-redis"])
    pv = preview(ctx, spec)
    assert pv.targets == []
    reasons = {(e.asset_name, e.username): e.reason for e in pv.excluded}
    assert reasons[("sm-redis", "default")] == "secure mode: well-known redis admin account"
    assert reasons[("sm-pg", "postgres")].startswith("secure mode")


@pytest.mark.parametrize("platform", ["postgresql", "mariadb", "redis"])
def test_server_down_mid_run(ctx: Context, request: pytest.FixtureRequest, platform: str) -> None:
    """The server dies right after the second account's push: the first succeeds, the rest fail or stay
    unverified, and once it is back a reconcile leaves every account with exactly the vault's secret.

    AccountPushed is sent from the asset's own thread before that account's login, so the stop lands at a
    known point (AccountSettled comes from the run's step writer, while the asset thread goes on).
    """
    from core.events import AccountPushed

    server = request.getfixturevalue(SERVERS[platform])
    users = [fresh("down") for _ in range(3)]
    for u in users:
        make_user(server, platform, u, f"pw-{u}")
    db_asset(ctx, f"down-{platform}", platform, server, accounts={u: f"pw-{u}" for u in users})
    spec = task(ctx, f"down-{platform}", users, [f"down-{platform}"])
    pushed: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, AccountPushed):
            pushed.append(event.username)
            if len(pushed) == 2:
                server.stop()

    try:
        info = run_task(ctx, spec.name, on_event=on_event)
    finally:
        server.start()
    st = statuses(ctx, info.id)
    assert st[pushed[0]][0] == "success"
    assert all(s in ("failed", "unverified") for u, (s, _) in st.items() if u != pushed[0]), st
    reconcile(ctx)
    for u in users:
        assert server.can_login(u, vault_secret(ctx, f"down-{platform}", u)), u


def test_mariadb_tls_disable_stays_plaintext_where_tls_is_offered(mariadb_tls_localhost: Any) -> None:
    """tls=disable means no TLS even when the server offers it (PyMySQL would otherwise "prefer" it); require
    encrypts, also on a second connection sharing its TLS context. The server's own session status says which."""
    from core.drivers.dbconn import Conn
    from core.drivers.mysql import MySQLDriver

    server = mariadb_tls_localhost
    for tls, encrypted in (("disable", False), ("require", True), ("require", True)):
        driver = MySQLDriver(Conn("mariadb", "127.0.0.1", server.port, "", tls, "", 10.0, 10.0),
                             server.admin_user, server.admin_password)
        try:
            with driver.db.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                cipher = str(cur.fetchone()[1] or "")
        finally:
            driver.close()
        assert bool(cipher) is encrypted, (tls, cipher)


def test_tls_required(ctx: Context, pg_tls_private: Any) -> None:
    """A server that only takes TLS: tls=disable cannot even log in; require and verify-full (with the CA) rotate."""
    server = pg_tls_private
    users = {mode: fresh("tls") for mode in ("disable", "require", "verify-full")}
    for mode, u in users.items():
        server.create_role(u, f"start-{u}")
        opts: dict[str, Any] = {"tls": mode}
        if mode == "verify-full":
            opts["ca_file"] = server.ca_file
        db_asset(ctx, f"tls-{mode}", "postgresql", server, accounts={u: f"start-{u}"}, options=opts)
        info = run_task(ctx, task(ctx, f"tls-{mode}", [u], [f"tls-{mode}"]).name)
        status, error = statuses(ctx, info.id)[u]
        if mode == "disable":
            assert status == "failed" and "no encryption" in error, error
            assert server.can_login(u, f"start-{u}")
        else:
            assert status == "success", error
            assert server.can_login(u, vault_secret(ctx, f"tls-{mode}", u))
    # verify-full against the wrong CA: refused before anything is sent.
    u = fresh("tls")
    server.create_role(u, f"start-{u}")
    db_asset(ctx, "tls-badca", "postgresql", server, accounts={u: f"start-{u}"},
             options={"tls": "verify-full", "ca_file": "/etc/ssl/certs/ca-certificates.crt"})
    info = run_task(ctx, task(ctx, "tls-badca", [u], ["tls-badca"]).name)
    assert statuses(ctx, info.id)[u][0] == "failed"
    assert server.can_login(u, f"start-{u}")


def test_unsupported_database_platforms_are_rejected(ctx: Context) -> None:
    from core.drivers.dbconn import check_options
    from core.errors import InputError

    for platform in ("oracle", "sqlserver", "mongodb"):
        with pytest.raises(InputError, match="not supported"):
            check_options(platform)



# -- the command line, and no secret anywhere it should not be ------------------------------------------------
def _cli_inventory(keyturn_cli: Any, name: str, platform: str, server: Any, users: dict[str, str],
                   admin_user: str | None = None, admin_password: str | None = None) -> None:
    keyturn_cli("asset", "add", name, "--platform", platform, "--address", "127.0.0.1", "--port", str(server.port),
                check=True)
    keyturn_cli("account", "add", name, admin_user or server.admin_user, "--password-stdin", "--privileged",
                input=(admin_password or server.admin_password) + "\n", check=True)
    for u, pw in users.items():
        keyturn_cli("account", "add", name, u, "--password-stdin", input=pw + "\n", check=True)


def test_cli_rotation_leaves_no_secret_in_server_logs_processes_or_keyturn(
        ctx: Context, keyturn_cli: Any, pg_private: Any, mariadb_private: Any, redis_private: Any) -> None:
    import json
    import threading

    users = {"postgresql": fresh("lk"), "mariadb": fresh("lk"), "redis": fresh("lk")}
    servers = {"postgresql": pg_private, "mariadb": mariadb_private, "redis": redis_private}
    old = {p: f"old-{NASTY}-{p}" for p in users}
    for platform, server in servers.items():
        make_user(server, platform, users[platform], old[platform])
        _cli_inventory(keyturn_cli, f"lk-{platform}", platform, server, {users[platform]: old[platform]})
    show = keyturn_cli("asset", "show", "lk-postgresql", check=True).stdout
    assert "tls:" in show and "not used (database protocol)" in show

    # Redis MONITOR sees every command the server runs, as the server received it.
    monitor_lines: list[str] = []
    import redis as redis_lib

    mon_client = redis_lib.Redis(host="127.0.0.1", port=redis_private.port, username=redis_private.admin_user,
                                 password=redis_private.admin_password)  # no read timeout: the run may be quiet
    monitor = mon_client.monitor()
    monitor.__enter__()  # sends MONITOR; the thread below reads until the connection is closed

    def watch() -> None:
        try:
            for command in monitor.listen():
                monitor_lines.append(str(command))
        except Exception:  # noqa: BLE001 - the connection is closed at the end of the test
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    redis_private.admin().config_set("slowlog-log-slower-than", 0)
    redis_private.admin().config_set("slowlog-max-len", 10000)
    pg_log_start = len(pg_private.server_log())
    my_marks = mariadb_private.log_marks()
    sampler = ProcSampler()
    try:
        keyturn_cli("task", "create", "leak", "--accounts", ",".join(users.values()), "--asset",
                    "lk-postgresql,lk-mariadb,lk-redis", "--param", "account_host=%", check=True)
        preview = keyturn_cli("task", "preview", "leak", check=True).stdout
        ran = keyturn_cli("task", "run", "leak", check=True)
        listing = keyturn_cli("records", "list", "--json", check=True)
    finally:
        seen = sampler.stop()
        monitor.connection.disconnect()
        watcher.join(timeout=5)
    assert "3 accounts on 3 assets" in preview
    records = json.loads(listing.stdout)
    assert {r["status"] for r in records} == {"success"}, records
    new = {}
    for platform, server in servers.items():
        new[platform] = vault_secret(ctx, f"lk-{platform}", users[platform])
        assert server.can_login(users[platform], new[platform])
        assert not server.can_login(users[platform], old[platform])

    pg_log = pg_private.server_log()[pg_log_start:]
    my_log = mariadb_private.log_since(my_marks)
    assert "ALTER ROLE" in pg_log and "SCRAM-SHA-256$" in pg_log, "log_statement=all saw no change: it proves nothing"
    assert "ALTER USER" in my_log, "the general log saw no change: it proves nothing"
    # MONITOR leaves out administrative commands (ACL SETUSER among them) by design; it shows the logins.
    # The slow log, at a 0 µs threshold, does record ACL SETUSER with its arguments.
    assert any("AUTH" in line for line in monitor_lines), f"MONITOR saw nothing of the run: {monitor_lines[:5]}"
    slow = "\n".join(str(e) for e in redis_private.admin().slowlog_get(1000))
    assert "SETUSER" in slow, "the Redis slow log saw no change: it proves nothing"
    assert sampler.passes > 3
    executions = {r.execution_id for r in rec.list_records(ctx.db)}
    places = {
        "PostgreSQL log": pg_log, "MariaDB general/slow log": my_log, "Redis MONITOR": "\n".join(monitor_lines),
        "Redis slow log": slow,
        "process argv/environ": seen, "CLI output": ran.stdout + ran.stderr + preview + listing.stdout,
        "execution logs": "\n".join(rec.get_execution(ctx.db, e).log for e in executions),
        "audit events": keyturn_cli("audit", "list", "--limit", "500").stdout,
    }
    secrets = set(old.values()) | set(new.values()) | {s.admin_password for s in servers.values()}
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret was found in {where}"


def test_redis_default_user_rotates_with_secure_mode_off(ctx: Context, redis_private: Any) -> None:
    """`default` (what requirepass sets) is left alone in secure mode; with it off, AUTH <password> alone
    takes the new password and the ACL file keeps it across a restart."""
    db_asset(ctx, "def-redis", "redis", redis_private, accounts={"default": redis_private.default_password})
    spec = task(ctx, "def", ["default"], ["def-redis"])
    ctx.settings.secure_mode = False
    info = run_task(ctx, spec.name)
    assert info.succeeded == 1, statuses(ctx, info.id)
    new = vault_secret(ctx, "def-redis", "default")
    import redis as redis_lib

    legacy = redis_lib.Redis(host="127.0.0.1", port=redis_private.port, password=new)  # AUTH <password>, as requirepass
    assert legacy.ping()
    legacy.close()
    assert not redis_private.can_login("default", redis_private.default_password)
    redis_private.stop()
    redis_private.start()
    assert redis_private.can_login("default", new), "the ACL file did not keep the change"
    redis_private.default_password = new  # later tests of the session know it


def test_unverified_record_is_retried_once_the_server_checks_passwords(ctx: Context, pg_private: Any) -> None:
    """Trust auth leaves the record unverified with both secrets; after pg_hba is fixed, retry pushes the same
    candidate again and a real login settles it."""
    from core.engine import retry_records

    u = fresh("rt")
    pg_private.create_role(u, "rt-start-1")
    pg_private.trust(u)
    try:
        db_asset(ctx, "rt-pg", "postgresql", pg_private, accounts={u: "rt-start-1"})
        first = run_task(ctx, task(ctx, "rt", [u], ["rt-pg"]).name)
    finally:
        pg_private.trust(None)
    [record] = rec.list_records(ctx.db, execution_id=first.id)
    assert record.status == "unverified"
    candidate = rec.record_secrets(ctx.db, record.id)[1]
    assert vault_secret(ctx, "rt-pg", u) == "rt-start-1"  # not taken before a login proved it
    again = retry_records(ctx, [record.id])
    assert again.succeeded == 1
    assert vault_secret(ctx, "rt-pg", u) == candidate
    assert pg_private.can_login(u, candidate) and not pg_private.can_login(u, "rt-start-1")


def test_rotation_through_an_ssh_gateway(ctx: Context, pg_private: Any, mariadb_private: Any, sandbox_host: Any,
                                        keyturn_cli: Any) -> None:
    """A database reached only through a trusted SSH host: push, verify and reconcile go through its tunnel;
    a gateway without a pinned key stops the work before any secret is sent."""
    from core.drivers import gateway
    from storage.inventory import pin_host_key

    h = sandbox_host
    with ctx.db.write() as s:
        gw, _ = upsert_asset(s, "jump", address=h.address, port=h.port, platform="linux")
        key_type, b64 = h.host_key.split()[:2]
        pin_host_key(s, gw, key_type, b64, "test")
        upsert_account(ctx.db, s, gw, h.admin_user, secret=h.admin_password, privileged=True)
    pg_user, my_user = fresh("gw"), fresh("gw")
    pg_private.create_role(pg_user, "gw-start-1")
    mariadb_private.create_user(my_user, "gw-start-1")
    db_asset(ctx, "gw-pg", "postgresql", pg_private, accounts={pg_user: "gw-start-1"}, options={"gateway": "jump"})
    db_asset(ctx, "gw-maria", "mariadb", mariadb_private, accounts={my_user: "gw-start-1"}, options={"gateway": "jump"})
    log_start = len(h.log())
    info = run_task(ctx, task(ctx, "gw", [pg_user, my_user], ["gw-pg", "gw-maria"]).name)
    assert info.succeeded == 2, statuses(ctx, info.id)
    assert pg_private.can_login(pg_user, vault_secret(ctx, "gw-pg", pg_user))
    assert mariadb_private.can_login(my_user, vault_secret(ctx, "gw-maria", my_user))
    assert "Accepted password for " + h.admin_user in h.log()[log_start:], "the gateway was not used"
    assert not gateway._tunnels, "a tunnel outlived its run"
    show = keyturn_cli("asset", "show", "gw-pg").stdout
    assert "gateway:" in show and "jump" in show

    # Without a tunnel open, a login through the gateway is UNKNOWN, never a false REJECTED.
    from core.drivers.base import verify_password
    from storage.inventory import get_asset

    assert verify_password(get_asset(ctx.db, "gw-pg"), pg_user, "whatever").status == "unknown"
    # An untrusted gateway: nothing is sent, the record fails naming the host key.
    with ctx.db.write() as s:
        from storage.tables import HostKey
        from sqlmodel import select

        for row in s.exec(select(HostKey).where(HostKey.asset_id == gw.id)).all():
            s.delete(row)
    info = run_task(ctx, task(ctx, "gw2", [pg_user], ["gw-pg"]).name)
    status, error = statuses(ctx, info.id)[pg_user]
    assert status == "failed" and "key" in error.lower(), error
    assert pg_private.can_login(pg_user, vault_secret(ctx, "gw-pg", pg_user))


def test_keyturn_scram_verifier_is_libpqs(pg_private: Any) -> None:
    """keyturn computes PostgreSQL's SCRAM-SHA-256 verifier itself for printable ASCII (hashlib lets go of the GIL;
    libpq does not): for the salt and iteration count libpq chose, it must be exactly libpq's verifier. Anything
    else (non-ASCII, where SASLprep may change the text) is libpq's own. The logins in the other tests prove the
    server accepts what keyturn sends."""
    from core.drivers.postgresql import scram_sha256, scram_verifier

    with pg_private.admin() as conn:
        for password in [NASTY, "plain", " leading and trailing ", "~!@#$%^&*()_+-=[]{}|:<>?,./", "x" * 200]:
            theirs = conn.pgconn.encrypt_password(password.encode(), b"someone", b"scram-sha-256").decode()
            head, salt_b64 = theirs.split("$")[1].split(":")
            assert scram_sha256(password, base64.b64decode(salt_b64), int(head)) == theirs
            mine = scram_verifier(conn, "someone", password)
            assert mine.startswith("SCRAM-SHA-256$4096:") and mine != theirs  # a fresh salt each time
        assert scram_verifier(conn, "someone", "pässwörd").startswith("SCRAM-SHA-256$4096:")
