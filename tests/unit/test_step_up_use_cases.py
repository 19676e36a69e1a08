"""Issues 10/11: the TOTP step-up lives in the core use cases, so the app and the command line ask alike.

Once an operator is enforced, each guarded use case called without an unlocked MfaSession raises
StepUpRequired after it has read its input and before it writes: no audit row, no change. With the code
given (an unlocked session) the same call goes through; what needs no code (an asset's comment, a plain
account) never asks.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from core.audit import list_events
from core.context import Context
from core.mfa import MfaSession, code_at
from core.operators import add_operator, confirm_enrolment, start_enrolment
from core.stepup import STEP_UP, StepUpRequired
from storage.inventory import get_asset, upsert_asset
from storage.tables import utcnow

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class KeyServer:
    """An SSH server on 127.0.0.1 that only shows its ed25519 host key (enough for fetch_host_keys)."""

    def __init__(self) -> None:
        import paramiko
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                         serialization.NoEncryption()).decode()
        self.key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import paramiko

        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.key)
            try:
                transport.start_server(server=paramiko.ServerInterface())
            except Exception:  # noqa: BLE001 - a client that only wanted the key hangs up
                pass
            finally:
                threading.Timer(2, transport.close).start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    try:
        yield server
    finally:
        server.close()


def enrol(ctx: Context, name: str = "alice") -> str:
    """Add and confirm an operator (operators are enforced from then on); their TOTP secret."""
    add_operator(ctx, name, f"{name}@example.org")
    secret = pyotp.parse_uri(start_enrolment(ctx, name).uri).secret
    # The previous 30 s step (accepted as clock drift), so the current code is still unused for the test.
    confirm_enrolment(ctx, name, code_at(secret, utcnow() - timedelta(seconds=30)))
    return secret


@pytest.fixture
def alice(ctx: Context) -> Context:
    """ctx acting as alice, an enforced operator, with a session in which she gave no code."""
    enrol(ctx)
    ctx.operator = "alice"
    ctx.mfa = MfaSession(ctx.settings)
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="192.0.2.1", port=22)
    return ctx


def unlock(ctx: Context) -> None:
    """As if the acting operator had just given a good code."""
    ctx.mfa._until[ctx.operator] = ctx.mfa.now() + timedelta(minutes=5)


def _events(ctx: Context) -> list[tuple[str, str]]:
    return [(e.action, str(e.object_id)) for e in list_events(ctx, limit=1000)]


def refused(ctx: Context, action: str, call: Callable[[], object]) -> None:
    """call raises StepUpRequired for action and adds no audit event."""
    before = _events(ctx)
    with pytest.raises(StepUpRequired) as caught:
        call()
    assert caught.value.action == action and action in STEP_UP
    assert caught.value.operator == "alice"
    assert _events(ctx) == before


def test_asset_edit_of_where_it_is_needs_a_code_its_comment_does_not(alice: Context) -> None:
    from core.services import inventory as svc

    for change in ({"address": "203.0.113.6"}, {"port": 2222}, {"platform": "aix"}):
        refused(alice, "asset.edit", lambda: svc.edit_asset(alice, "web1", **change))  # noqa: B023
    asset = get_asset(alice.db, "web1")
    assert (asset.address, asset.port, asset.platform) == ("192.0.2.1", 22, "linux")
    # The app's form sends every field; the same address and port with a new comment needs no code.
    assert svc.edit_asset(alice, "web1", address="192.0.2.1", port=22, platform="linux", comment="rack 4")[1] == "updated"
    unlock(alice)
    assert svc.edit_asset(alice, "web1", address="203.0.113.6")[0].address == "203.0.113.6"


def test_a_database_assets_tls_mode_and_gateway_need_a_code(alice: Context) -> None:
    from core.services import inventory as svc

    unlock(alice)
    svc.add_asset(alice, "pg1", address="192.0.2.5", platform="postgresql", tls="require")
    alice.mfa = MfaSession(alice.settings)
    refused(alice, "asset.edit", lambda: svc.edit_asset(alice, "pg1", tls="disable"))
    assert get_asset(alice.db, "pg1").tls == "require"
    svc.edit_asset(alice, "pg1", tls="require", database="app")  # same mode: no code


def test_import_reads_the_file_first_then_needs_a_code(alice: Context, tmp_path: Path) -> None:
    from core.errors import InputError
    from core.services import inventory as svc

    bad = tmp_path / "bad.csv"
    bad.write_text("name,address,port\nweb9,192.0.2.9,ssh\n")
    with pytest.raises(InputError) as caught:  # the file's own error comes first, not a request for a code
        svc.import_file(alice, bad)
    assert not isinstance(caught.value, StepUpRequired)
    hosts = tmp_path / "hosts"
    hosts.write_text("[web]\nweb1 ansible_host=203.0.113.6\nweb9 ansible_host=192.0.2.9\n")
    refused(alice, "inventory.import", lambda: svc.import_file(alice, hosts))
    assert [a.name for a in svc.list_assets(alice)] == ["web1"]
    assert get_asset(alice.db, "web1").address == "192.0.2.1"
    unlock(alice)
    assert svc.import_file(alice, hosts).assets_created == 1


def test_known_hosts_import_and_pinning_need_a_code(alice: Context, tmp_path: Path) -> None:
    from core.hostkeys import TrustCheck
    from core.services import inventory as svc

    known = tmp_path / "known_hosts"
    known.write_text(f"192.0.2.1 ssh-ed25519 {KEY}\n")
    refused(alice, "asset.trust", lambda: svc.import_known_hosts_file(alice, known))
    offer = svc.HostKeyOffer(svc.get_asset(alice, "web1"), (("ssh-ed25519", KEY),),
                             TrustCheck((("ssh-ed25519", KEY),), ()))
    refused(alice, "asset.trust", lambda: svc.pin_offer(alice, offer))
    assert get_asset(alice.db, "web1").host_keys == ()
    unlock(alice)
    assert svc.import_known_hosts_file(alice, known).host_keys_pinned == 1


def test_fetching_a_new_host_key_needs_a_code_before_it_is_shown(alice: Context, key_server: KeyServer) -> None:
    from core.services import inventory as svc

    with alice.db.write() as s:
        upsert_asset(s, "web1", address="127.0.0.1", port=key_server.port)
    refused(alice, "asset.trust", lambda: svc.fetch_offer(alice, "web1"))
    unlock(alice)
    offer = svc.fetch_offer(alice, "web1")
    assert svc.pin_offer(alice, offer) == 1
    alice.mfa = MfaSession(alice.settings)
    assert svc.fetch_offer(alice, "web1").check.already_pinned  # nothing to pin: nothing to ask


def test_a_privileged_account_needs_a_code_a_plain_one_does_not(alice: Context) -> None:
    from core.services import inventory as svc
    from storage.inventory import list_accounts

    assert svc.add_account(alice, "web1", "app", secret_type="password", secret="Plain-1") == "created"
    refused(alice, "account.privileged",
            lambda: svc.add_account(alice, "web1", "root", secret_type="password", secret="Root-1", privileged=True))
    refused(alice, "account.privileged", lambda: svc.check_account_step_up(alice, "web1", "root", privileged=True))
    assert [a.username for a in list_accounts(alice.db, asset="web1")] == ["app"]
    unlock(alice)
    svc.add_account(alice, "web1", "root", secret_type="password", secret="Root-1", privileged=True)
    alice.mfa = MfaSession(alice.settings)
    # Re-keying (or demoting) an account that is privileged is changing a privileged account.
    refused(alice, "account.privileged",
            lambda: svc.add_account(alice, "web1", "root", secret_type="password", secret="Root-2"))
    assert next(a for a in list_accounts(alice.db, asset="web1") if a.username == "root").version == 1


def _task(ctx: Context) -> None:
    from core import tasks
    from storage.types import TaskSpec

    unlock(ctx)
    tasks.create_task(ctx, TaskSpec(name="t1", usernames=["app"], assets=["web1"], active=False))
    ctx.mfa = MfaSession(ctx.settings)


def test_running_copying_and_activating_a_task_need_a_code(alice: Context) -> None:
    from core import tasks
    from core.engine import run_task
    from core.operators import mark_system
    from storage.queries import list_executions

    _task(alice)
    refused(alice, "task.run", lambda: run_task(alice, "t1"))
    refused(alice, "task.create", lambda: tasks.copy_task(alice, "t1", "t2"))
    refused(alice, "task.edit", lambda: tasks.set_active(alice, "t1", True))
    assert [t.name for t in tasks.list_tasks(alice)] == ["t1"] and not tasks.get_task(alice, "t1").active
    assert list_executions(alice.db) == []
    tasks.set_active(alice, "t1", False)  # already inactive; deactivating never needs a code
    mark_system(alice)  # keyturn's scheduler runs without a person and without a code
    run_task(alice, "t1", trigger="schedule")
    assert len(list_executions(alice.db)) == 1


def test_queueing_a_run_for_workers_needs_a_code(alice: Context) -> None:
    from core.workers import queue_run
    from storage.queries import list_executions

    _task(alice)
    refused(alice, "task.run", lambda: queue_run(alice, "t1"))
    assert list_executions(alice.db) == []


def test_key_rotation_needs_a_code(alice: Context) -> None:
    from core.vaultkeys import rotate_master_key
    from storage.keyfile import key_path

    before = key_path(alice.home).read_bytes()
    refused(alice, "key.rotate", lambda: rotate_master_key(alice))
    assert key_path(alice.home).read_bytes() == before


def test_operator_admin_needs_a_code(alice: Context) -> None:
    from core import operators as ops
    from core.scopes import set_scope
    from storage.scopes import scope_paths

    unlock(alice)
    ops.add_operator(alice, "bob", "bob@example.org")
    alice.mfa = MfaSession(alice.settings)
    refused(alice, "operator.admin", lambda: ops.add_operator(alice, "carol", "carol@example.org"))
    refused(alice, "operator.admin", lambda: ops.remove_operator(alice, "bob"))
    refused(alice, "operator.admin", lambda: ops.reset_mfa(alice, "bob"))
    refused(alice, "operator.admin", lambda: set_scope(alice, "bob", ["/prod"]))
    assert [o.name for o in ops.list_operators(alice)] == ["alice", "bob"]
    assert scope_paths(alice.db, "bob") == []


def test_cli_account_add_asks_core_before_it_reads_a_secret(ctx: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    """Without a terminal the code is stdin's line one, the password line two; a plain account needs no code."""
    secret = enrol(ctx)
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="192.0.2.1")
    alice = {"KEYTURN_OPERATOR": "alice"}
    p = keyturn_cli("account", "add", "web1", "app", "--password-stdin", input="Plain-Pass-1\n", env=alice)
    assert p.returncode == 0, p.stderr
    p = keyturn_cli("account", "add", "web1", "root", "--password-stdin", "--privileged", input="Root-Pass-1\n", env=alice)
    # Line one is taken as the code (a wrong one), never as the password: nothing is stored.
    assert p.returncode == 3 and "changing a privileged account needs a fresh TOTP code" in p.stderr
    assert "wrong code" in p.stderr and "Root-Pass-1" not in p.stderr
    p = keyturn_cli("account", "add", "web1", "root", "--password-stdin", "--privileged",
                    input=f"{code_at(secret, utcnow())}\nRoot-Pass-1\n", env=alice)
    assert p.returncode == 0, p.stderr
    from core.reveal import reveal_pairs

    mfa = MfaSession(ctx.settings)
    mfa._until["alice"] = mfa.now() + timedelta(minutes=5)
    ctx.operator = "alice"
    assert [i.secret for i in reveal_pairs(ctx, mfa, [("web1", "root")], reason="T-1")] == ["Root-Pass-1"]


def test_a_privileged_accounts_become_password_alone_needs_a_code(alice: Context) -> None:
    from core.services import inventory as svc

    unlock(alice)
    svc.add_account(alice, "web1", "root", secret_type="password", secret="Root-1", privileged=True)
    alice.mfa = MfaSession(alice.settings)
    refused(alice, "account.privileged", lambda: svc.edit_account(alice, "web1", "root", become="Sudo-1"))
    unlock(alice)
    assert svc.edit_account(alice, "web1", "root", become="Sudo-1") == "updated"
    assert svc.edit_account(alice, "web1", "root", become="Sudo-1") == "unchanged"


def test_cli_account_edit_asks_for_the_code_before_the_become_password(ctx: Context, keyturn_cli) -> None:  # type: ignore[no-untyped-def]
    """Without a terminal the code is stdin's line one, the become password line two."""
    from core.services import inventory as svc
    from storage.inventory import account_secrets, list_accounts

    secret = enrol(ctx)
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="192.0.2.1")
    ctx.operator, ctx.mfa = "alice", MfaSession(ctx.settings)
    unlock(ctx)
    svc.add_account(ctx, "web1", "root", secret_type="password", secret="Root-Pass-1", privileged=True)
    root = list_accounts(ctx.db, asset="web1")[0].id
    alice = {"KEYTURN_OPERATOR": "alice"}
    p = keyturn_cli("account", "edit", "web1", "root", "--become-password-stdin", input="Sudo-Pass-1\n", env=alice)
    # Line one is taken as the code (a wrong one), never as the password: nothing is stored.
    assert p.returncode == 3 and "wrong code" in p.stderr and "Sudo-Pass-1" not in p.stderr
    assert account_secrets(ctx.db, root).become is None
    p = keyturn_cli("account", "edit", "web1", "root", "--become-password-stdin",
                    input=f"{code_at(secret, utcnow())}\nSudo-Pass-1\n", env=alice)
    assert p.returncode == 0 and p.stdout == "account root@web1 updated\n", p.stderr
    assert account_secrets(ctx.db, root).become == "Sudo-Pass-1"
