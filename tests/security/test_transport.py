"""Finding 10 (transport): no SMTP password without TLS, no legacy SSH ciphers or MACs."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

import pytest

from core import ssh
from core.context import Context
from core.notify import MailError, send_test_message, store_smtp_password
from storage.types import AssetInfo, HostKeyInfo, fingerprint_sha256
from tests.sandbox import SandboxHost


def test_smtp_auth_without_tls_is_refused_before_any_connection(ctx: Context) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    accepted: list[object] = []

    def watch() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    t = threading.Thread(target=watch)
    t.start()
    try:
        store_smtp_password(ctx, "smtp-Pa55-word")
        ctx.settings = replace(ctx.settings, smtp_host="127.0.0.1", smtp_port=listener.getsockname()[1],
                               smtp_user="bot", smtp_starttls=False, smtp_ssl=False, smtp_timeout=2)
        with pytest.raises(MailError, match="without TLS") as caught:
            send_test_message(ctx, "ann@example.test")
        assert "smtp-Pa55-word" not in str(caught.value)
    finally:
        t.join()
        listener.close()
    assert accepted == [], "keyturn connected to the server although it would have sent the password in clear"


def _asset(h: SandboxHost) -> AssetInfo:
    key_type, b64 = h.host_key.split()[:2]
    return AssetInfo(id=1, name=h.name, address=h.address, port=h.port, platform="linux", active=True,
                     host_keys=(HostKeyInfo(key_type, b64, fingerprint_sha256(b64)),))


def _restart_with(h: SandboxHost, extra: str) -> None:
    config = (h.read_file("/etc/ssh/sshd_config") or "").split("# keyturn-test-algorithms\n")[0]
    h.write_file("/etc/ssh/sshd_config", config + "# keyturn-test-algorithms\n" + extra)
    h.stop()
    h.start()


@pytest.mark.sshd
@pytest.mark.parametrize("offer", ["Ciphers 3des-cbc\n", "Ciphers aes128-ctr\nMACs hmac-sha1,hmac-md5\n"])
def test_a_host_offering_only_legacy_algorithms_is_not_connected_to(sandbox_host: SandboxHost, offer: str) -> None:
    h = sandbox_host
    try:
        _restart_with(h, offer)
        with pytest.raises(ssh.NetworkError, match="no acceptable|Incompatible"):
            ssh.connect(_asset(h), "alice", password=h.passwords["alice"], timeouts=ssh.Timeouts(5, 5, 5)).close()
    finally:
        _restart_with(h, "")
    ssh.connect(_asset(h), "alice", password=h.passwords["alice"]).close()  # modern defaults still work


def test_a_task_may_name_only_an_allowed_chpasswd(ctx: Context) -> None:
    from core.errors import InputError
    from core.tasks import create_task, edit_task
    from storage.inventory import upsert_asset
    from storage.types import HostParams, TaskSpec

    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.0.0.1")
    for path in ("/tmp/evil", "/bin/sh", "/home/mallory/chpasswd", "sh"):
        with pytest.raises(InputError, match="chpasswd path: .* is not an allowed program"):
            create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["web1"], params=HostParams(chpasswd_path=path)))
    create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["web1"], params=HostParams(chpasswd_path="/usr/sbin/chpasswd")))
    with pytest.raises(InputError, match="not an allowed program"):
        edit_task(ctx, "t", params=HostParams(chpasswd_path="/tmp/evil"))
    ctx.settings.allowed_programs = "/opt/site/bin/chpasswd-audited"  # only the protected config file sets this
    edit_task(ctx, "t", params=HostParams(chpasswd_path="/opt/site/bin/chpasswd-audited"))


def test_a_created_users_shell_and_sudo_commands_come_from_the_allow_list(ctx: Context) -> None:
    """Finding 1: every program path in parameters is allow-listed, not only chpasswd. A sudo command runs as
    root for the created user (`sudo=/bin/bash` would hand them root); a shell runs at each of their logins."""
    from core.errors import InputError
    from core.tasks import create_task
    from storage.inventory import upsert_asset
    from storage.types import HostParams, TaskSpec

    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.0.0.1")

    def task(name: str, **params: object) -> None:
        create_task(ctx, TaskSpec(name=name, usernames=["newbie"], assets=["web1"],
                                  params=HostParams(create_user=True, **params)))  # type: ignore[arg-type]

    for bad in ("/bin/bash", "/usr/bin/id,/bin/sh", "/usr/bin/tee /etc/sudoers", "/opt/evil/bin/tool"):
        with pytest.raises(InputError, match="sudo: .* is not an allowed sudo command") as refused:
            task("s", sudo_commands=bad)
        assert refused.value.field == "sudo"
    with pytest.raises(InputError, match="shell: '/tmp/sh' is not an allowed login shell") as refused:
        task("s", shell="/tmp/sh")
    assert refused.value.field == "shell"
    task("ok", shell="/bin/bash", sudo_commands="/usr/bin/whoami,/usr/bin/id -u")  # the defaults: report only
    ctx.settings.allowed_programs = "/usr/bin/systemctl restart nginx,/opt/site/bin/sh"  # the protected config file
    task("site", shell="/opt/site/bin/sh", sudo_commands="/usr/bin/systemctl restart nginx")
    with pytest.raises(InputError, match="sudo: '/usr/bin/systemctl stop sshd'"):
        task("s", sudo_commands="/usr/bin/systemctl stop sshd")


def test_a_stored_task_is_checked_against_the_allow_list_again_when_it_runs(ctx) -> None:
    """A task saved while a program was allowed (or written into the database by hand) does not run it later."""
    from sqlalchemy import text

    from core.engine import run_task
    from core.errors import InputError
    from core.tasks import create_task
    from core.workers import queue_run
    from storage.inventory import upsert_account, upsert_asset
    from storage.queries import count_executions
    from storage.types import HostParams, TaskSpec

    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1")
        upsert_account(ctx.db, s, asset, "alice", secret="Old-Secret-1")
    ctx.settings.allowed_programs = "/opt/site/bin/chpasswd-audited"
    create_task(ctx, TaskSpec(name="t", usernames=["alice"], assets=["web1"],
                              params=HostParams(chpasswd_path="/opt/site/bin/chpasswd-audited")))
    ctx.settings.allowed_programs = ""  # the protected config file no longer allows it
    for start in (lambda: run_task(ctx, "t"), lambda: queue_run(ctx, "t")):
        with pytest.raises(InputError, match="task t: chpasswd path: '/opt/site/bin/chpasswd-audited' is not an "
                                             "allowed program.*nothing was run"):
            start()
    # A row edited behind keyturn's back (an older version's task, a database writer) is refused the same way.
    with ctx.db.write() as s:
        s.connection().execute(text("UPDATE change_secret_task SET params = :p WHERE name = 't'"),
                               {"p": '{"chpasswd_path": "/tmp/evil"}'})
    with pytest.raises(InputError, match="chpasswd path: '/tmp/evil' is not an allowed program"):
        run_task(ctx, "t")
    with ctx.db.write() as s:  # a sudo command that hands the created user root, stored behind keyturn's back
        s.connection().execute(text("UPDATE change_secret_task SET params = :p WHERE name = 't'"),
                               {"p": '{"create_user": true, "sudo_commands": "/bin/bash"}'})
    with pytest.raises(InputError, match="task t: sudo: '/bin/bash' is not an allowed sudo command.*nothing was run"):
        run_task(ctx, "t")
    assert count_executions(ctx.db) == 0  # refused before any record or execution was written
