"""Encrypted hand-over: a real rotation on a sandbox host, a real SMTP server, and age identities that open it."""

from __future__ import annotations

import csv
import email
import email.policy
import io

import pyrage
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.context import Context
from core.engine import run_task
from core.errors import InputError
from core.handover import set_age_key
from core.notify import send_execution_report
from core.task_options import set_options
from storage.tables import Operator
from tests.conftest import fresh_host, module_fleet
from tests.integration.test_email import SmtpServer, assert_no_secret, execution_secrets, smtp  # noqa: F401 - fixture
from tests.integration.test_rotation import build_inventory, make_task, vault
from tests.sandbox import SandboxHost

pytestmark = pytest.mark.sshd

USERS = ("alice", "bob")


fleet = module_fleet(1, USERS, doc="One host with alice and bob.")


host = fresh_host(USERS)


def ssh_ed25519_pair() -> tuple[str, bytes]:
    """(public key line, OpenSSH private key) of a fresh ed25519 key."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    return public + " ben@laptop", private


def messages_to(smtp: SmtpServer, address: str) -> list[email.message.EmailMessage]:
    out = []
    for env in smtp.mailbox.envelopes:
        if address in env.rcpt_tos:
            out.append(email.message_from_bytes(env.content, policy=email.policy.default))
    return out


def attachments(msg: email.message.EmailMessage) -> list[tuple[str, bytes]]:
    return [(p.get_filename() or "", p.get_content()) for p in msg.iter_attachments()]


def test_recipients_with_a_key_get_the_new_secrets_encrypted_to_them_alone(
        ctx: Context, host: SandboxHost, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx, smtp_from="keyturn@example.test")
    with ctx.db.write() as s:
        for name in ("ann", "ben", "cid"):
            s.add(Operator(name=name, email=f"{name}@example.test"))
    ann_identity = pyrage.x25519.Identity.generate()
    ben_public, ben_private = ssh_ed25519_pair()
    set_age_key(ctx, "ann", str(ann_identity.to_public()))
    set_age_key(ctx, "ben", ben_public)
    build_inventory(ctx, [host], USERS)
    make_task(ctx, "handover", [host], USERS, recipients=["ann", "ben", "cid"])
    set_options(ctx, "handover", send_secrets=True)

    info = run_task(ctx, "handover")
    assert info.status == "success"
    assert send_execution_report(ctx, info.id) is None
    new = {u: vault(ctx, host.name, u).secret for u in USERS}

    expected = sorted((host.name, u, "password", new[u]) for u in USERS)
    for name, open_it in (("ann", lambda blob: pyrage.decrypt(blob, [ann_identity])),
                          ("ben", lambda blob: pyrage.decrypt(blob, [pyrage.ssh.Identity.from_buffer(ben_private)]))):
        [msg] = messages_to(smtp, f"{name}@example.test")
        [(filename, blob)] = attachments(msg)
        assert filename == f"handover-{info.id}.csv.age"
        assert blob.startswith(b"age-encryption.org/v1")
        rows = list(csv.DictReader(io.StringIO(open_it(blob).decode())))
        assert sorted((r["asset"], r["username"], r["secret_type"], r["new_secret"]) for r in rows) == expected
        # The secrets are only inside the envelope: not in the message text nor in its raw bytes.
        raw = msg.as_bytes()
        assert_no_secret(raw, msg, [s for s in new.values() if s])
        assert "encrypted to your age key" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # Each envelope opens only with its own recipient's identity.
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(blob, [pyrage.x25519.Identity.generate()])
    # A recipient without a key gets the counts only, as before.
    [plain] = messages_to(smtp, "cid@example.test")
    assert attachments(plain) == []
    assert "No secret is ever sent by mail" in plain.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert_no_secret(plain.as_bytes(), plain, execution_secrets(ctx, info.id))


def test_without_send_secrets_nobody_gets_an_attachment(ctx: Context, host: SandboxHost, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx, smtp_from="keyturn@example.test")
    with ctx.db.write() as s:
        s.add(Operator(name="ann", email="ann@example.test"))
    set_age_key(ctx, "ann", str(pyrage.x25519.Identity.generate().to_public()))
    build_inventory(ctx, [host], USERS)
    make_task(ctx, "quiet", [host], USERS, recipients=["ann"])
    info = run_task(ctx, "quiet")
    assert send_execution_report(ctx, info.id) is None
    [msg] = messages_to(smtp, "ann@example.test")
    assert attachments(msg) == []


def test_age_keys_are_checked_before_they_are_stored(ctx: Context) -> None:
    with ctx.db.write() as s:
        s.add(Operator(name="ann", email="ann@example.test"))
    for bad in ("age1notakey", "ssh-rsa AAAAB3NzaC1yc2E", "hello"):
        with pytest.raises(InputError, match="^age key: "):
            set_age_key(ctx, "ann", bad)
    with pytest.raises(InputError, match="^operator: no operator named 'zed'"):
        set_age_key(ctx, "zed", str(pyrage.x25519.Identity.generate().to_public()))
