"""Execution reports and test messages against a real SMTP server on loopback (aiosmtpd).

Executions and records are built with the storage layer (no sshd needed): what is checked is the
message that really arrived, and that a refused or unreachable server leaves the rotation untouched.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from sqlmodel import select

from core.context import Context
from core.notify import REDACTED, send_execution_report
from core.tasks import create_task
from storage.inventory import upsert_account, upsert_asset
from storage.mail import get_smtp_password, set_smtp_password
from storage.tables import Account, ChangeRecord, Execution, Operator, utcnow
from storage.types import TaskSpec


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every envelope, or refuses with a fixed reply."""

    refuse: str = ""  # e.g. "550 5.7.1 relaying denied"
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.envelopes.append(envelope)
        return "250 Message accepted"


@dataclass
class SmtpServer:
    """A running SMTP server on loopback and what it received."""

    host: str
    port: int
    mailbox: Mailbox
    logins: list[tuple[str, str]]

    def settings_for(self, ctx: Context, **extra: object) -> None:
        """Point the context's settings at this server."""
        ctx.settings = replace(ctx.settings, smtp_host=self.host, smtp_port=self.port, smtp_timeout=5.0, **extra)


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert file = the CA file too, key file)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _start(mailbox: Mailbox, logins: list[tuple[str, str]], password: str | None = None,
           tls: tuple[Path, Path] | None = None) -> Controller:
    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == password
        if isinstance(auth_data, LoginPassword):
            logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=ok, handled=False)  # False: the server itself answers 535

    kwargs: dict = {}
    if password is not None:
        kwargs = {"authenticator": authenticator, "auth_require_tls": tls is not None}
    if tls is not None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        kwargs["tls_context"] = context
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An accepting SMTP server on 127.0.0.1."""
    box, logins = Mailbox(), []
    controller = _start(box, logins)
    try:
        yield SmtpServer("127.0.0.1", controller.port, box, logins)
    finally:
        controller.stop()


@pytest.fixture
def refusing_smtp() -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that refuses every recipient."""
    box, logins = Mailbox(refuse="550 5.7.1 relaying denied for this sender"), []
    controller = _start(box, logins)
    try:
        yield SmtpServer("127.0.0.1", controller.port, box, logins)
    finally:
        controller.stop()


OLD = {"alice": "Old-Alice-pw-9f3k2", "bob": "Old-Bob-pw-77qqz", "carol": "Old-Carol-pw-x0x0"}
NEW = {"alice": "New-Alice-pw-L2m8Z", "bob": "New-Bob-pw-c4T9w", "carol": "New-Carol-pw-r5Y1n"}


@dataclass
class Rotation:
    """An execution with three records built through the storage layer."""

    execution_id: int
    task_name: str


def make_rotation(ctx: Context, recipients: list[tuple[str, str]], *, error_with_secret: bool = False,
                  task_name: str = "rotate <web> & co") -> Rotation:
    """web1 with alice (success), bob (failed), carol (unverified); operators as (name, email)."""
    with ctx.db.write() as s:
        for name, addr in recipients:
            s.add(Operator(name=name, email=addr))
        asset, _ = upsert_asset(s, "web1", address="127.0.0.1")
        for user in OLD:
            upsert_account(ctx.db, s, asset, user, secret=NEW[user] if user == "alice" else OLD[user])
    task = create_task(ctx, TaskSpec(name=task_name, usernames=list(OLD), assets=["web1"], interval_hours=24,
                              recipients=[n for n, _ in recipients]))
    errors = {"alice": "", "bob": "chpasswd: <pam> refused the password & gave up",
              "carol": "verify: connection timed out after 15s"}
    if error_with_secret:  # a driver bug that leaked the new secret into an error text
        errors["bob"] += f" (tried {NEW['bob']})"
    statuses = {"alice": "success", "bob": "failed", "carol": "unverified"}
    started = utcnow() - timedelta(seconds=83)
    with ctx.db.write() as s:
        run = Execution(task_id=task.id, task_name=task_name, trigger="schedule", status="partial", operator="scheduler",
                        started_at=started, finished_at=started + timedelta(seconds=83), total=3, succeeded=1,
                        failed=1, unverified=1)
        s.add(run)
        s.flush()
        for user in OLD:
            acc = s.exec(select(Account).where(Account.username == user)).one()
            rec = ChangeRecord(execution_id=run.id, task_id=task.id, account_id=acc.id, asset_id=acc.asset_id, task_name=task_name,
                               asset_name="web1", username=user, status=statuses[user], error=errors[user])
            s.add(rec)
            s.flush()
            ctx.db.seal(rec, "old_secret_enc", OLD[user])
            ctx.db.seal(rec, "new_secret_enc", NEW[user])
        assert run.id is not None
        return Rotation(run.id, task_name)


def rotation_state(ctx: Context, execution_id: int) -> list[tuple]:
    """Everything the rotation wrote: record statuses, errors and secrets, account secrets and versions."""
    with ctx.db.read() as s:
        recs = s.exec(select(ChangeRecord).where(ChangeRecord.execution_id == execution_id)
                      .order_by(ChangeRecord.id)).all()
        accs = s.exec(select(Account).order_by(Account.id)).all()
        return ([(r.status, r.error, ctx.db.unseal(r, "old_secret_enc"), ctx.db.unseal(r, "new_secret_enc"))
                 for r in recs]
                + [(a.username, a.version, ctx.db.unseal(a, "secret_enc")) for a in accs])


def execution_secrets(ctx: Context, execution_id: int) -> list[str]:
    """Every old and new secret of the execution's records, decrypted."""
    out = []
    with ctx.db.read() as s:
        for r in s.exec(select(ChangeRecord).where(ChangeRecord.execution_id == execution_id)).all():
            for column in ("old_secret_enc", "old_passphrase_enc", "new_secret_enc", "new_passphrase_enc"):
                value = ctx.db.unseal(r, column)
                if value:
                    out.append(value)
    return out


def mail_error(ctx: Context, execution_id: int) -> str:
    """What the TUI shows as the execution's mail error."""
    with ctx.db.read() as s:
        run = s.get(Execution, execution_id)
        assert run is not None
        return run.mail_error


def assert_no_secret(raw: bytes, message: email.message.EmailMessage, secrets: list[str]) -> None:
    """No secret in the raw bytes nor in any decoded part (a base64 part would hide it from a byte search)."""
    texts = [raw.decode("utf-8", "replace")]
    texts += [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    for secret in secrets:
        assert secret.encode() not in raw
        for text in texts:
            assert secret not in text


def test_report_arrives_with_counts_text_and_html_and_no_secret(ctx: Context, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx, smtp_from="keyturn@example.test")
    rot = make_rotation(ctx, [("ann", "ann@example.test"), ("ben", "ben@example.test")])
    before = rotation_state(ctx, rot.execution_id)

    assert send_execution_report(ctx, rot.execution_id) is None

    assert len(smtp.mailbox.envelopes) == 1
    env = smtp.mailbox.envelopes[0]
    assert sorted(env.rcpt_tos) == ["ann@example.test", "ben@example.test"]
    assert env.mail_from == "keyturn@example.test"
    msg = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert msg["Subject"].strip() == "keyturn: rotate <web> & co partial: 1 succeeded, 1 failed, 1 unverified"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for expected in ("Task:        rotate <web> & co", "Trigger:     schedule", "Duration:    1m 23s",
                     "Succeeded:   1", "Failed:      1", "Unverified:  1",
                     "web1 / bob: failed: chpasswd: <pam> refused the password & gave up",
                     "web1 / carol: unverified: verify: connection timed out after 15s",
                     "keyturn records list --task 'rotate <web> & co' --status failed", "Records mode"):
        assert expected in text
    assert "web1 / alice" not in text  # only accounts that need a look are listed
    # HTML: everything escaped, nothing of the user's text taken as markup.
    assert "rotate &lt;web&gt; &amp; co" in html
    assert "&lt;pam&gt; refused the password &amp; gave up" in html
    assert "<pam>" not in html and "<web>" not in html
    assert_no_secret(env.original_content, msg, execution_secrets(ctx, rot.execution_id))
    assert mail_error(ctx, rot.execution_id) == ""
    assert rotation_state(ctx, rot.execution_id) == before


def test_a_secret_leaked_into_an_error_text_is_redacted(ctx: Context, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx)
    rot = make_rotation(ctx, [("ann", "ann@example.test")], error_with_secret=True)
    assert send_execution_report(ctx, rot.execution_id) is None
    env = smtp.mailbox.envelopes[0]
    msg = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert f"(tried {REDACTED})" in msg.get_body(("plain",)).get_content()
    assert_no_secret(env.original_content, msg, execution_secrets(ctx, rot.execution_id))


def test_refusing_server_leaves_rotation_intact_and_records_the_error(ctx: Context,
                                                                     refusing_smtp: SmtpServer) -> None:
    refusing_smtp.settings_for(ctx)
    rot = make_rotation(ctx, [("ann", "ann@example.test")])
    before = rotation_state(ctx, rot.execution_id)

    error = send_execution_report(ctx, rot.execution_id)

    assert error is not None and "550 5.7.1 relaying denied" in error and "ann@example.test" in error
    assert mail_error(ctx, rot.execution_id) == error
    assert refusing_smtp.mailbox.envelopes == []
    assert rotation_state(ctx, rot.execution_id) == before


def test_server_down_leaves_rotation_intact_and_records_the_error(ctx: Context) -> None:
    port = free_port()
    ctx.settings = replace(ctx.settings, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5.0)
    rot = make_rotation(ctx, [("ann", "ann@example.test")])
    before = rotation_state(ctx, rot.execution_id)

    error = send_execution_report(ctx, rot.execution_id)

    assert error == f"SMTP 127.0.0.1:{port}: cannot connect: Connection refused"
    assert mail_error(ctx, rot.execution_id) == error
    assert rotation_state(ctx, rot.execution_id) == before


def test_no_recipients_sends_nothing_and_records_no_error(ctx: Context, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx)
    rot = make_rotation(ctx, [])
    assert send_execution_report(ctx, rot.execution_id) is None
    assert smtp.mailbox.envelopes == []
    assert mail_error(ctx, rot.execution_id) == ""


def test_recipient_without_address_is_named_and_others_still_get_it(ctx: Context, smtp: SmtpServer) -> None:
    smtp.settings_for(ctx)
    rot = make_rotation(ctx, [("ann", "ann@example.test"), ("dan", "")])
    error = send_execution_report(ctx, rot.execution_id)
    assert error == "no email address for dan"
    assert smtp.mailbox.envelopes[0].rcpt_tos == ["ann@example.test"]
    # Once fixed, a resend clears the error the TUI shows.
    with ctx.db.write() as s:
        s.exec(select(Operator).where(Operator.name == "dan")).one().email = "dan@example.test"
    assert send_execution_report(ctx, rot.execution_id) is None
    assert mail_error(ctx, rot.execution_id) == ""


def test_smtp_login_uses_the_password_from_the_vault(ctx: Context, tmp_path: Path) -> None:
    box, logins = Mailbox(), []
    cert, key = tls_files(tmp_path)
    controller = _start(box, logins, password="smtp-Pa55-word", tls=(cert, key))
    try:
        ctx.settings = replace(ctx.settings, smtp_host="127.0.0.1", smtp_port=controller.port, smtp_user="bot",
                               smtp_timeout=5.0, smtp_starttls=True, smtp_ca_file=str(cert))
        rot = make_rotation(ctx, [("ann", "ann@example.test")])
        error = send_execution_report(ctx, rot.execution_id)
        assert error is not None and "no SMTP password is stored" in error
        set_smtp_password(ctx.db, "wrong")
        error = send_execution_report(ctx, rot.execution_id)
        assert error is not None and "535" in error and "wrong" not in error
        set_smtp_password(ctx.db, "smtp-Pa55-word")
        assert send_execution_report(ctx, rot.execution_id) is None
        assert logins[-1] == ("bot", "smtp-Pa55-word")
        assert len(box.envelopes) == 1
    finally:
        controller.stop()


# -- the command line ---------------------------------------------------------------------------------
def test_cli_mail_test_and_set_password(keyturn_cli, smtp: SmtpServer) -> None:  # noqa: ANN001
    env = {"KEYTURN_SMTP_HOST": smtp.host, "KEYTURN_SMTP_PORT": str(smtp.port),
           "KEYTURN_SMTP_FROM": "ops@example.test"}
    done = keyturn_cli("mail", "test", "ann@example.test", env=env, check=True)
    assert f"test message sent to ann@example.test via 127.0.0.1:{smtp.port}" in done.stdout
    env_msg = smtp.mailbox.envelopes[0]
    assert env_msg.rcpt_tos == ["ann@example.test"] and env_msg.mail_from == "ops@example.test"
    msg = email.message_from_bytes(env_msg.original_content, policy=email.policy.default)
    assert msg["Subject"] == "keyturn test message"
    assert msg.get_body(("html",)) is not None

    stored = keyturn_cli("mail", "set-password", input="s3cret-smtp\n", env=env, check=True)
    assert "stored in the vault" in stored.stdout and "s3cret-smtp" not in stored.stdout + stored.stderr


def test_cli_mail_test_reports_a_refusal_and_a_closed_port(keyturn_cli, refusing_smtp: SmtpServer) -> None:  # noqa: ANN001
    env = {"KEYTURN_SMTP_HOST": refusing_smtp.host, "KEYTURN_SMTP_PORT": str(refusing_smtp.port)}
    refused = keyturn_cli("mail", "test", "ann@example.test", env=env)
    assert refused.returncode == 1
    assert "keyturn: error: SMTP" in refused.stderr and "550 5.7.1 relaying denied" in refused.stderr
    assert "Traceback" not in refused.stderr
    port = free_port()
    down = keyturn_cli("mail", "test", "ann@example.test", env={"KEYTURN_SMTP_HOST": "127.0.0.1",
                                                                 "KEYTURN_SMTP_PORT": str(port)})
    assert down.returncode == 1
    assert down.stderr.strip() == f"keyturn: error: SMTP 127.0.0.1:{port}: cannot connect: Connection refused"
    bad = keyturn_cli("mail", "test", "not an address", env=env)
    assert bad.returncode != 0 and "is not an email address" in bad.stderr


def test_cli_set_password_is_readable_only_through_the_vault(ctx: Context, keyturn_cli, settings) -> None:  # noqa: ANN001
    keyturn_cli("mail", "set-password", input="vault-only-pw\n", check=True)
    assert get_smtp_password(ctx.db) == "vault-only-pw"
    assert b"vault-only-pw" not in settings.db_path.read_bytes()
    keyturn_cli("mail", "set-password", "--clear", check=True)
    assert get_smtp_password(ctx.db) is None
    trail = keyturn_cli("audit", "list", check=True).stdout
    assert "mail.password-set" in trail and "mail.password-clear" in trail and "vault-only-pw" not in trail
