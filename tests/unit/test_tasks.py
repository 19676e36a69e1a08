"""Change-secret tasks on a real SQLite database: save/load, validation, sealed secrets, next run times, task files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlmodel import func, select

from core.context import Context
from core.errors import InputError, KeyturnError
from core.tasks import copy_task, create_task, delete_task, edit_task, get_task, list_tasks, load_task_file, set_active
from core.tasks import upcoming_runs
from storage.inventory import upsert_asset
from storage.locks import acquire_task_lock
from storage.tables import ChangeSecretTask, Operator, TaskAsset, utcnow
from storage.types import HostParams, PasswordRules, TaskSpec
from tests.pg import stored_bytes

# Storage, engine, scheduler, MFA rules: the same on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_backends

PASSWORD = "Sp3cific $ecret {{ not a template }} 'q' \"dq\" \\"


@pytest.fixture
def inventory(ctx: Context) -> Context:
    """Two assets: web1 in /prod/web, db1 in /prod/db."""
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="127.0.0.2", nodes=["/prod/web"])
        upsert_asset(s, "db1", address="127.0.0.3", nodes=["/prod/db"])
    return ctx


def _encrypted_key(passphrase: bytes) -> str:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.BestAvailableEncryption(passphrase),
    ).decode()


def _count(session, table: type) -> int:  # type: ignore[no-untyped-def]
    return session.exec(select(func.count()).select_from(table)).one()


def _db_bytes(ctx: Context) -> bytes:
    # SQLite in WAL mode: recent pages may sit in the -wal file, so both are searched (stored_bytes does).
    return stored_bytes(ctx.settings)


def test_create_and_load_a_task_with_a_sealed_specific_password(inventory: Context) -> None:
    spec = TaskSpec(name="web-root", usernames=["root", "alice"], assets=["web1"], nodes=["/prod/db"],
                    secret_strategy="specific", specific_secret=PASSWORD, become_password="sudo pw 1",
                    description="nightly", params=HostParams(use_sudo=True, chpasswd_path="/usr/sbin/chpasswd"))
    saved = create_task(inventory, spec)
    assert saved.id is not None and saved.next_run_at is None  # not periodic
    loaded = get_task(inventory, "web-root")
    assert (loaded.usernames, loaded.assets, loaded.nodes) == (["root", "alice"], ["web1"], ["/prod/db"])
    assert loaded.specific_secret == PASSWORD and loaded.become_password == "sudo pw 1"
    assert loaded.params.chpasswd_path == "/usr/sbin/chpasswd"
    listed = list_tasks(inventory)
    assert [t.name for t in listed] == ["web-root"] and listed[0].specific_secret is None
    assert PASSWORD not in repr(loaded)
    raw = _db_bytes(inventory)
    assert PASSWORD.encode() not in raw and b"sudo pw 1" not in raw
    assert b"web-root" in raw  # the search itself works: names are stored in plain text


def test_a_second_task_with_the_same_name_is_refused(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="t", usernames=["a"], assets=["web1"]))
    with pytest.raises(InputError, match="^name: a task named 't' exists$"):
        create_task(inventory, TaskSpec(name="t", usernames=["b"], assets=["db1"]))
    assert get_task(inventory, "t").usernames == ["a"]


@pytest.mark.parametrize(("spec", "message"), [
    (TaskSpec(name="t", usernames=["a"], assets=["web1", "nope"]), "assets: no asset named 'nope'"),
    (TaskSpec(name="t", usernames=["a"], nodes=["/prod/none"]), "nodes: no node '/prod/none'"),
])
def test_unknown_assets_and_nodes_are_named_and_nothing_is_written(inventory: Context, spec: TaskSpec,
                                                                   message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}$") as err:
        create_task(inventory, spec)
    assert err.value.field == message.split(":")[0]
    assert list_tasks(inventory) == []
    with inventory.db.read() as s:
        assert _count(s, ChangeSecretTask) == 0 and _count(s, TaskAsset) == 0


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": "  "}, "name"),
    ({"name": "a\nb"}, "name"),
    ({"usernames": []}, "accounts"),
    ({"usernames": ["ok", ""]}, "accounts"),
    ({"usernames": ["bad:name"]}, "accounts"),
    ({"assets": [], "nodes": []}, "targets"),
    ({"secret_strategy": "guess"}, "strategy"),
    ({"secret_type": "token"}, "type"),
    ({"ssh_key_strategy": "replace"}, "key strategy"),
    ({"key_algorithm": "dsa"}, "key algorithm"),
    ({"secret_strategy": "specific"}, "password"),
    ({"secret_strategy": "specific", "specific_secret": "two\nlines"}, "password"),
    ({"secret_strategy": "specific", "secret_type": "ssh_key", "specific_secret": "not a key"}, "private key"),
    ({"specific_secret": "given"}, "strategy"),
    ({"rules": PasswordRules(length=7)}, "length"),
    ({"rules": PasswordRules(digits=True, lower=False, upper=False, symbols=False, exclude="0123456789")}, "exclude"),
    ({"rules": PasswordRules(lower=False, upper=False, digits=False, symbols=False)}, "rules"),
    ({"params": HostParams(chpasswd_path="chpasswd; rm -rf /")}, "chpasswd path"),
    ({"become_password": "a\nb"}, "become password"),
    ({"interval_hours": 0}, "interval"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * *"}, "cron"),
    ({"interval_hours": 2, "cron": "0 * * * *"}, "schedule"),
    ({"start_at": datetime(2030, 1, 1, tzinfo=timezone.utc)}, "start"),
])
def test_invalid_tasks_are_refused_naming_the_field(inventory: Context, changes: dict, field: str) -> None:
    spec = TaskSpec(name="t", usernames=["alice"], assets=["web1"])
    for key, value in changes.items():
        setattr(spec, key, value)
    with pytest.raises(InputError) as err:
        create_task(inventory, spec)
    assert str(err.value).startswith(f"{field}: "), str(err.value)
    assert err.value.field == field  # what a front end reacts on (never the message text)
    assert list_tasks(inventory) == []


def test_a_random_ssh_key_task_needs_no_rules_and_unsatisfiable_rules_do_not_matter(inventory: Context) -> None:
    spec = TaskSpec(name="keys", usernames=["deploy"], assets=["web1"], secret_type="ssh_key",
                    rules=PasswordRules(length=3), key_algorithm="rsa4096", ssh_key_strategy="append")
    saved = create_task(inventory, spec)
    assert (saved.secret_type, saved.key_algorithm, saved.ssh_key_strategy) == ("ssh_key", "rsa4096", "append")


def test_a_specific_private_key_needs_its_right_passphrase(inventory: Context) -> None:
    key = _encrypted_key(b"correct horse")
    spec = TaskSpec(name="k", usernames=["deploy"], assets=["web1"], secret_type="ssh_key", secret_strategy="specific",
                    specific_secret=key, specific_passphrase="wrong horse")
    with pytest.raises(InputError, match="^private key: wrong passphrase$"):
        create_task(inventory, spec)
    spec.specific_passphrase = "correct horse"
    create_task(inventory, spec)
    loaded = get_task(inventory, "k")
    assert loaded.specific_secret.strip() == key.strip() and loaded.specific_passphrase == "correct horse"
    raw = _db_bytes(inventory)
    assert b"correct horse" not in raw and key.splitlines()[1].encode() not in raw


def test_recipients_are_checked_once_operators_exist(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="a", usernames=["u"], assets=["web1"], recipients=["anyone"]))
    with inventory.db.write() as s:
        s.add(Operator(name="carol", email="carol@example.test"))
    with pytest.raises(InputError, match="^recipients: no operator named 'dave'$"):
        create_task(inventory, TaskSpec(name="b", usernames=["u"], assets=["web1"], recipients=["carol", "dave"]))
    assert create_task(inventory, TaskSpec(name="c", usernames=["u"], assets=["web1"], recipients=["carol"])).recipients == ["carol"]


def test_next_run_times(inventory: Context) -> None:
    before = utcnow()
    now_task = create_task(inventory, TaskSpec(name="now", usernames=["u"], assets=["web1"], interval_hours=6))
    # A new periodic task is first due one interval after its creation (issue 12 #7), not at once.
    assert before + timedelta(hours=6) <= now_task.next_run_at <= utcnow() + timedelta(hours=6)
    runs = upcoming_runs(now_task, 3)
    assert runs[1] - runs[0] == timedelta(hours=6) and runs[2] - runs[1] == timedelta(hours=6)

    start = datetime(2031, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    later = create_task(inventory, TaskSpec(name="later", usernames=["u"], assets=["web1"], cron="0 3 * * *",
                                            start_at=start))
    assert later.next_run_at == start and later.next_run_at.utcoffset() == timedelta(0)
    assert [r.hour for r in upcoming_runs(later, 3)] == [0, 3, 3]

    off = set_active(inventory, "now", False)
    assert off.next_run_at is None and upcoming_runs(off) == []
    t0 = utcnow()
    on = set_active(inventory, "now", True)
    assert on.next_run_at >= t0 + timedelta(hours=6)  # re-activated: its next slot, not at once

    edited = edit_task(inventory, "now", interval_hours=48)
    assert edited.next_run_at > utcnow() + timedelta(hours=47)  # a changed schedule starts from now
    manual = edit_task(inventory, "now", interval_hours=None)
    assert manual.next_run_at is None


def test_edit_renames_changes_rules_and_drops_an_unused_specific_secret(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="old", usernames=["u"], assets=["web1"], secret_strategy="specific",
                                    specific_secret=PASSWORD))
    edited = edit_task(inventory, "old", name="new", secret_strategy="random", rules=PasswordRules(length=40, symbols=False))
    assert edited.name == "new" and edited.rules.length == 40 and not edited.rules.symbols
    loaded = get_task(inventory, "new")
    assert loaded.specific_secret is None and loaded.id == edited.id
    with inventory.db.read() as s:
        assert s.get(ChangeSecretTask, edited.id).specific_secret_enc is None
    with pytest.raises(LookupError):
        get_task(inventory, "old")
    with pytest.raises(InputError, match="^edit: unknown field"):
        edit_task(inventory, "new", colour="red")
    create_task(inventory, TaskSpec(name="other", usernames=["u"], assets=["web1"]))
    with pytest.raises(InputError, match="^name: a task named 'other' exists$"):
        edit_task(inventory, "new", name="other")


def test_an_invalid_edit_changes_nothing(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="t", usernames=["u"], assets=["web1"]))
    with pytest.raises(InputError):
        edit_task(inventory, "t", usernames=["v"], assets=["missing"])
    assert get_task(inventory, "t").usernames == ["u"]


def test_copy_keeps_settings_and_secrets_under_a_new_id(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="a", usernames=["u"], nodes=["/prod"], secret_strategy="specific",
                                    specific_secret=PASSWORD, interval_hours=12))
    b = copy_task(inventory, "a", "b")
    a = get_task(inventory, "a")
    loaded = get_task(inventory, "b")
    assert b.id != a.id and loaded.specific_secret == PASSWORD and loaded.nodes == ["/prod"]
    assert loaded.interval_hours == 12 and loaded.next_run_at is not None
    with pytest.raises(InputError, match="^name: a task named 'a' exists$"):
        copy_task(inventory, "b", "a")


def test_delete_is_refused_while_the_task_runs(inventory: Context) -> None:
    t = create_task(inventory, TaskSpec(name="busy", usernames=["u"], assets=["web1"]))
    assert acquire_task_lock(inventory.db, t.id, "other-host:123")
    with pytest.raises(KeyturnError, match="is running"):
        delete_task(inventory, "busy")
    assert get_task(inventory, "busy")


def test_delete_removes_the_task_and_its_links(inventory: Context) -> None:
    create_task(inventory, TaskSpec(name="gone", usernames=["u"], assets=["web1", "db1"]))
    delete_task(inventory, "gone")
    assert list_tasks(inventory) == []
    with inventory.db.read() as s:
        assert _count(s, TaskAsset) == 0
    with pytest.raises(LookupError, match="no task named 'gone'"):
        delete_task(inventory, "gone")


def test_load_task_file(tmp_path: Path) -> None:
    key = _encrypted_key(b"pp")
    (tmp_path / "id_deploy").write_text(key)
    path = tmp_path / "task.toml"
    path.write_text(
        'name = "deploy-keys"\naccounts = ["deploy", "ci"]\nnodes = ["/prod"]\nkey_file = "id_deploy"\n'
        'key_strategy = "replace-all"\ncron = "0 4 * * 1"\nstart = 2031-01-01T00:00:00Z\ncheck = false\n'
        '[host]\nsudo = false\ncreate_user = true\n'
    )
    spec = load_task_file(path)
    assert (spec.name, spec.usernames, spec.nodes) == ("deploy-keys", ["deploy", "ci"], ["/prod"])
    assert (spec.secret_type, spec.secret_strategy, spec.ssh_key_strategy) == ("ssh_key", "specific", "replace-all")
    assert spec.specific_secret == key and spec.cron == "0 4 * * 1" and not spec.check_after_change
    assert spec.start_at == datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert spec.params == HostParams(use_sudo=False, create_user=True)

    path.write_text('name = "p"\naccounts = "root, admin"\nassets = ["web1"]\n[rules]\nlength = 32\nexclude = "lO01"\n')
    spec = load_task_file(path)
    assert spec.usernames == ["root", "admin"] and spec.rules == PasswordRules(length=32, exclude="lO01")


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\ncolour = "red"\n', "colour: unknown key"),
    ('accounts = ["a"]\n', "name: missing"),
    ('name = "x"\ninterval = "daily"\n', "interval: must be int"),
    ('name = "x"\n[rules]\nlength = "long"\n', "rules.length: must be int"),
    ('name = "x"\n[rules]\nsize = 3\n', "rules.size: unknown key"),
    ('name = "x"\n[host]\nsudo = "yes"\n', "host.sudo: must be true or false"),
    ('name = "x"\nkey_file = "missing.pem"\n', "key_file: cannot read"),
    ('name = "x"\nstart = "next tuesday"\n', "start: 'next tuesday' is not an ISO time"),
    ('name = "x\n', ""),
])
def test_task_file_errors_read_file_key_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_task_file(path)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_task_changes_are_audited_in_the_same_transaction_without_secrets(inventory: Context) -> None:
    from core.audit import list_events, verify_chain

    create_task(inventory, TaskSpec(name="aud", usernames=["u"], assets=["web1"], secret_strategy="specific",
                                    specific_secret=PASSWORD))
    edit_task(inventory, "aud", specific_secret="An0ther secret!", name="aud2")
    copy_task(inventory, "aud2", "aud3")
    set_active(inventory, "aud3", False)
    delete_task(inventory, "aud3")
    with pytest.raises(InputError):
        create_task(inventory, TaskSpec(name="aud2", usernames=["u"], assets=["web1"]))  # refused: no event
    events = list(reversed(list_events(inventory, action="task.*")))
    assert [(e.action, e.object_id, e.actor) for e in events] == [
        ("task.create", "aud", "tester"), ("task.edit", "aud2", "tester"), ("task.copy", "aud3", "tester"),
        ("task.deactivate", "aud3", "tester"), ("task.delete", "aud3", "tester"),
    ]
    assert events[1].detail["fields"] == ["name", "specific_secret"] and events[1].detail["renamed_from"] == "aud"
    assert events[2].detail["copied_from"] == "aud2"
    text = repr([e.detail for e in events])
    assert PASSWORD not in text and "An0ther" not in text
    assert verify_chain(inventory).ok


def test_a_past_start_time_gives_the_next_slot_of_its_grid(inventory: Context) -> None:
    start = datetime(2020, 1, 1, 2, 0, tzinfo=timezone.utc)
    before = utcnow()
    t = create_task(inventory, TaskSpec(name="late", usernames=["u"], assets=["web1"], interval_hours=24, start_at=start))
    # Issue 12 #7: never due at creation; the first slot is the start's grid after now.
    assert before < t.next_run_at <= utcnow() + timedelta(hours=24) and (t.next_run_at.hour, t.next_run_at.minute) == (2, 0)
    runs = upcoming_runs(t, 3)
    assert runs[0] == t.next_run_at and [(r.hour, r.minute) for r in runs] == [(2, 0)] * 3
    assert runs[1] - runs[0] == timedelta(hours=24) and runs[2] - runs[1] == timedelta(hours=24)
