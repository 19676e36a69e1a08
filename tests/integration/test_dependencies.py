"""Dependency steps against real sshd sandbox hosts: a service's password file follows a rotation."""

from __future__ import annotations


import pytest

from core.context import Context
from core.dependencies import DependencyRan, retry_dependencies
from core.engine import run_task
from core.errors import InputError
from core.task_options import set_options
from storage import executions as rec
from storage.drift import record_flags
from tests.conftest import fresh_hosts, module_fleet
from tests.integration.test_rotation import Collect, build_inventory, make_task, vault
from tests.integration.test_email import smtp  # noqa: F401 - fixture
from tests.sandbox import SandboxHost

pytestmark = pytest.mark.sshd

# The "service" on the app host reads alice's database-host password from this file.
PASSWORD_FILE = "/etc/app/alice.pw"
WRITE_FILE = f"umask 077; mkdir -p /etc/app && cat > {PASSWORD_FILE}.new && mv {PASSWORD_FILE}.new {PASSWORD_FILE}"


fleet = module_fleet(2, ["alice"], doc="A database host (alice's account lives there) and an app host whose service uses alice's password.")


def _app_uses_alices_password(hosts: list[SandboxHost]) -> None:
    db, app = hosts
    app.run(["mkdir", "-p", "/etc/app"], check=True)
    app.write_file(PASSWORD_FILE, db.passwords["alice"] + "\n", mode=0o600, owner="root")


hosts = fresh_hosts(["alice"], prepare=_app_uses_alices_password,
                    doc="Both hosts reset; the app host's password file holds alice's current password.")


def service_password(app: SandboxHost) -> str:
    """What the app's service would log in with."""
    return (app.read_file(PASSWORD_FILE) or "").rstrip("\n")


def test_a_dependency_step_on_another_host_receives_the_new_password(ctx: Context, hosts: list[SandboxHost]) -> None:
    db, app = hosts
    build_inventory(ctx, hosts, ["alice"])
    make_task(ctx, "follow", [db], ["alice"])
    # The step also records every process's command line while it runs (its own parents included).
    set_options(ctx, "follow", dependencies=[{"asset": db.name, "run_on": app.name,
                                              "command": WRITE_FILE + "; ps -eo args > /tmp/kt-ps.txt"}])
    events = Collect()
    info = run_task(ctx, "follow", on_event=events)
    assert (info.status, info.succeeded) == ("success", 1)
    new = vault(ctx, db.name, "alice").secret
    assert new is not None and db.password_works("alice", new)
    # The service's file now holds the password the host and the vault agree on, readable by root only.
    assert service_password(app) == new
    assert app.file_mode(PASSWORD_FILE) == 0o600
    ran = [e for e in events.events if isinstance(e, DependencyRan)]
    assert [(e.run_on, e.status) for e in ran] == [(app.name, "ok")]
    record = rec.list_records(ctx.db, execution_id=info.id)[0]
    assert record_flags(ctx.db, [record.id])[record.id].dependency_status == "ok"
    # The secret went on stdin only: not in any command line while the step ran, nor in a log.
    ps = app.read_file("/tmp/kt-ps.txt") or ""
    assert "ps -eo args" in ps and new not in ps
    log = rec.get_execution(ctx.db, info.id, with_log=True).log
    assert "dependency on" in log and new not in log
    assert new not in app.log() and new not in db.log()


def test_a_failed_step_leaves_the_change_successful_with_a_warning_and_retries_alone(
        ctx: Context, hosts: list[SandboxHost]) -> None:
    db, app = hosts
    build_inventory(ctx, hosts, ["alice"])
    make_task(ctx, "follow2", [db], ["alice"])
    set_options(ctx, "follow2", dependencies=[
        {"asset": db.name, "run_on": app.name, "command": "cat > /dev/null; echo 'app: config is read-only' >&2; exit 3"},
    ])
    info = run_task(ctx, "follow2")
    record = rec.list_records(ctx.db, execution_id=info.id)[0]
    new = vault(ctx, db.name, "alice").secret
    # The change itself stands: success, vault and host agree.
    assert (info.status, record.status) == ("success", "success")
    assert new is not None and db.password_works("alice", new)
    flag = record_flags(ctx.db, [record.id])[record.id]
    assert flag.dependency_status == "failed"
    assert "exited 3" in flag.dependency_error and "config is read-only" in flag.dependency_error
    assert service_password(app) != new
    # The operator fixes the step and retries only the dependency: no new change of the secret.
    set_options(ctx, "follow2", dependencies=[{"asset": db.name, "run_on": app.name, "command": WRITE_FILE}])
    assert retry_dependencies(ctx, record.id) == ""
    assert service_password(app) == new == vault(ctx, db.name, "alice").secret
    assert record_flags(ctx.db, [record.id])[record.id].dependency_status == "ok"
    assert len(rec.list_records(ctx.db, task="follow2")) == 1


def test_dependency_steps_are_refused_for_key_tasks_and_unknown_assets(ctx: Context, hosts: list[SandboxHost]) -> None:
    db, _app = hosts
    build_inventory(ctx, hosts, ["alice"])
    make_task(ctx, "keys", [db], ["alice"], secret_type="ssh_key")
    with pytest.raises(InputError, match="^dependencies: only password tasks"):
        set_options(ctx, "keys", dependencies=[{"asset": db.name, "command": "true"}])
    make_task(ctx, "pw", [db], ["alice"])
    with pytest.raises(InputError, match="^dependency 1: run on: no asset named 'nope'"):
        set_options(ctx, "pw", dependencies=[{"asset": db.name, "run_on": "nope", "command": "true"}])


def test_the_mail_report_lists_dependency_warnings_and_drift(ctx: Context, hosts: list[SandboxHost], smtp) -> None:  # noqa: ANN001
    import email
    import email.policy

    from core.heartbeat import run_heartbeat
    from core.notify import send_execution_report
    from storage.tables import Operator

    db, app = hosts
    smtp.settings_for(ctx, smtp_from="keyturn@example.test")
    with ctx.db.write() as s:
        s.add(Operator(name="ann", email="ann@example.test"))
    build_inventory(ctx, hosts, ["alice"])
    make_task(ctx, "follow3", hosts, ["alice"], recipients=["ann"])
    set_options(ctx, "follow3", dependencies=[{"asset": db.name, "run_on": app.name,
                                               "command": "cat > /dev/null; echo 'app: restart failed' >&2; exit 1"}])
    info = run_task(ctx, "follow3")
    app.set_password("alice", "Changed-by-hand-1")
    run_heartbeat(ctx, "follow3")
    assert send_execution_report(ctx, info.id) is None
    [env] = smtp.mailbox.envelopes
    text = email.message_from_bytes(env.content, policy=email.policy.default).get_body(("plain",)).get_content()
    assert f"{db.name} / alice: {app.name}: the step exited 1: app: restart failed" in text
    assert f"{app.name} / alice: rejected" in text
    assert "Changed-by-hand-1" not in text
