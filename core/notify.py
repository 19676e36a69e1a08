"""Email reports of executions over SMTP; a report that cannot be sent never touches the rotation."""

from __future__ import annotations

import html
import logging
import shlex
import smtplib
import socket
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from core import textsafe
from core.config import Settings
from core.context import Context
from core.errors import KeyturnError
from core.errors import NotFound
from storage.mail import (
    SMTP_PASSWORD_ITEM, ExecutionReportData, execution_report_data, get_smtp_password, set_mail_error,
    set_smtp_password_in,
)
from storage.types import ExecutionInfo, RecordInfo

log = logging.getLogger("keyturn.notify")

# A mail client shows the first lines; a huge run still gets a report of bounded size.
MAX_LISTED = 200
REDACTED = "[redacted]"
# Shorter secrets would match ordinary words; the report only carries names, statuses and scrubbed errors anyway.
MIN_SCRUB_LENGTH = 4
NO_SECRET_LINE = "No secret is ever sent by mail; reveal them in keyturn after a TOTP check."
HANDOVER_LINE = ("The new secrets of this run are attached, encrypted to your age key only; "
                 "open the attachment with: age -d -i YOUR_IDENTITY FILE > secrets.csv")


class MailError(KeyturnError):
    """A message could not be delivered; the text is the SMTP server's or the network's reason."""


# -- sending ------------------------------------------------------------------------------------------
def _smtp_error_text(exc: BaseException, settings: Settings) -> str:
    # The server's words come from outside: no escape sequence of theirs reaches a log or a terminal.
    return textsafe.clean_line(_smtp_error_raw(exc, settings))


def _smtp_error_raw(exc: BaseException, settings: Settings) -> str:
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [f"{addr}: {code} {_decode(msg)}" for addr, (code, msg) in exc.recipients.items()]
        return f"SMTP {where} refused every recipient: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {where} answered {exc.smtp_code} {_decode(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"SMTP {where}: the server closed the connection: {exc}"
    if isinstance(exc, smtplib.SMTPException):  # before OSError: SMTPException is one
        return f"SMTP {where}: {exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"SMTP {where}: no answer within {settings.smtp_timeout:g}s"
    if isinstance(exc, ssl.SSLError):
        return f"SMTP {where}: TLS failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"SMTP {where}: cannot connect: {exc.strerror or exc}"
    return f"SMTP {where}: {exc}"


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def send_message(ctx: Context, msg: EmailMessage) -> list[str]:
    """Send msg to its To addresses; returns the refused addresses, raises MailError when none got it."""
    settings = ctx.settings
    if not settings.smtp_host:
        raise MailError("SMTP is not configured: set smtp_host ([smtp] host in the config file or KEYTURN_SMTP_HOST)")
    password = get_smtp_password(ctx.db) if settings.smtp_user else None
    if settings.smtp_user and password is None:
        raise MailError(f"smtp_user is {settings.smtp_user!r} but no SMTP password is stored; "
                        "run `keyturn mail set-password`")
    if settings.smtp_user and not (settings.smtp_ssl or settings.smtp_starttls):
        # AUTH over plain text hands the vault's SMTP password to anyone on the path (or a fake server).
        raise MailError("smtp_user is set but neither smtp_starttls nor smtp_ssl is on: keyturn does not send "
                        "the SMTP password without TLS; turn one on in the config file")
    tls = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    try:
        if settings.smtp_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                                    timeout=settings.smtp_timeout, context=tls)
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
        with client:
            if settings.smtp_starttls and not settings.smtp_ssl:
                client.starttls(context=tls)
            if settings.smtp_user:
                assert password is not None
                client.login(settings.smtp_user, password)
            refused = client.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(_smtp_error_text(exc, settings)) from None
    return [textsafe.clean_line(f"{addr}: {code} {_decode(text)}") for addr, (code, text) in refused.items()]


def _new_message(settings: Settings, to: list[str], subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or "localhost")
    return msg


def send_test_message(ctx: Context, address: str) -> None:
    """Send a short test message to address; raises MailError with the server's reason on failure."""
    if "@" not in address or any(c.isspace() for c in address):
        raise MailError(f"address: {address!r} is not an email address")
    msg = _new_message(ctx.settings, [address], "keyturn test message")
    msg.set_content(f"This is a test message from keyturn (operator {ctx.operator or 'unknown'}).\n"
                    "Execution reports will be sent through the same server.\n")
    msg.add_alternative(f"<p>This is a test message from keyturn (operator "
                        f"{html.escape(ctx.operator or 'unknown')}).</p>"
                        "<p>Execution reports will be sent through the same server.</p>", subtype="html")
    refused = send_message(ctx, msg)
    if refused:
        raise MailError("; ".join(refused))


def store_smtp_password(ctx: Context, password: str | None) -> None:
    """Store (None: forget) the SMTP password in the vault, and say so in the audit trail (never the value)."""
    from core.audit import record_event_in
    from core.stepup import require_step_up

    require_step_up(ctx, ctx.mfa, "mail.settings")

    with ctx.db.write() as s:
        set_smtp_password_in(s, ctx.db, password)
        record_event_in(s, ctx, "mail.password-clear" if password is None else "mail.password-set", "vault_item",
                        SMTP_PASSWORD_ITEM)


# -- the execution report -----------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(run: ExecutionInfo) -> str:
    if run.finished_at is None:
        return "still running"
    seconds = max(0.0, (run.finished_at - run.started_at).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _scrub(text: str, secrets: set[str]) -> str:
    # Drivers already keep secrets out of error texts; this is the second lock on the door.
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SCRUB_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _problems(records: list[RecordInfo]) -> list[RecordInfo]:
    # Failed first, then unverified, then anything left unsettled (a cancelled run).
    order = {"failed": 0, "unverified": 1}
    bad = [r for r in records if r.status != "success"]
    return sorted(bad, key=lambda r: (order.get(r.status, 2), r.asset_name, r.username, r.id))


def _see_more(task_name: str) -> list[str]:
    name = shlex.quote(task_name)
    return [f"keyturn records list --task {name} --status failed",
            f"keyturn records list --task {name} --status unverified",
            "or open keyturn and switch to Records mode",
            f"retry them: keyturn retry --task {name} --failed"]


def build_report(data: ExecutionReportData, to: list[str], settings: Settings, *, handover: bool = False) -> EmailMessage:
    """The report message (plain text and HTML) on one execution; its text holds no secret."""
    closing = HANDOVER_LINE if handover else NO_SECRET_LINE
    run = data.execution
    problems = _problems(data.records)
    scrub = lambda text: _scrub(text, data.secrets)  # noqa: E731 - local shorthand
    subject = (f"keyturn: {run.task_name} {run.status}: {run.succeeded} succeeded, {run.failed} failed, "
               f"{run.unverified} unverified")
    msg = _new_message(settings, to, scrub(subject))

    facts = [("Task", run.task_name), ("Execution", str(run.id)), ("Trigger", run.trigger),
             ("Status", run.status), ("Started", _when(run.started_at)), ("Duration", _duration(run)),
             ("Accounts", str(run.total)), ("Succeeded", str(run.succeeded)), ("Failed", str(run.failed)),
             ("Unverified", str(run.unverified))]
    if run.operator:
        facts.insert(3, ("Operator", run.operator))
    listed, hidden = problems[:MAX_LISTED], max(0, len(problems) - MAX_LISTED)

    lines = [f"keyturn execution report: {run.task_name}", ""]
    lines += [f"{label + ':':<12} {value}" for label, value in facts]
    lines.append("")
    if problems:
        lines.append("Accounts that did not succeed:")
        for r in listed:
            lines.append(f"  {r.asset_name} / {r.username}: {r.status}" + (f": {r.error}" if r.error else ""))
        if hidden:
            lines.append(f"  ... and {hidden} more")
        lines.append("")
    else:
        lines += ["Every account was changed and verified.", ""]
    if data.dependency_warnings:
        lines.append("Changed, but a dependency step failed (retry: keyturn records retry-dependencies ID):")
        lines += [f"  {asset} / {user}: {error}" for asset, user, error in data.dependency_warnings[:MAX_LISTED]]
        lines.append("")
    if data.drifted:
        lines.append("Drift (the last heartbeat did not log in with the vault's secret):")
        lines += [f"  {asset} / {user}: {status}" for asset, user, status in data.drifted[:MAX_LISTED]]
        lines.append("")
    lines.append("See more:")
    lines += [f"  {hint}" for hint in _see_more(run.task_name)]
    lines += ["", closing, ""]
    msg.set_content(scrub("\n".join(lines)))

    e = lambda value: html.escape(scrub(str(value)), quote=True)  # noqa: E731 - escape everything in HTML
    parts = [f"<h2>keyturn execution report: {e(run.task_name)}</h2>", "<table>"]
    parts += [f"<tr><th align='left'>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in facts]
    parts.append("</table>")
    if problems:
        parts.append("<h3>Accounts that did not succeed</h3>")
        parts.append("<table border='1' cellpadding='4' cellspacing='0'>"
                     "<tr><th>Asset</th><th>User</th><th>Status</th><th>Reason</th></tr>")
        parts += [f"<tr><td>{e(r.asset_name)}</td><td>{e(r.username)}</td><td>{e(r.status)}</td>"
                  f"<td>{e(r.error)}</td></tr>" for r in listed]
        parts.append("</table>")
        if hidden:
            parts.append(f"<p>... and {hidden} more</p>")
    else:
        parts.append("<p>Every account was changed and verified.</p>")
    if data.dependency_warnings:
        parts.append("<h3>Changed, but a dependency step failed</h3><ul>")
        parts += [f"<li>{e(asset)} / {e(user)}: {e(error)}</li>" for asset, user, error in data.dependency_warnings[:MAX_LISTED]]
        parts.append("</ul>")
    if data.drifted:
        parts.append("<h3>Drift (the last heartbeat did not log in with the vault's secret)</h3><ul>")
        parts += [f"<li>{e(asset)} / {e(user)}: {e(status)}</li>" for asset, user, status in data.drifted[:MAX_LISTED]]
        parts.append("</ul>")
    parts.append("<h3>See more</h3><ul>")
    parts += [f"<li><code>{e(hint)}</code></li>" for hint in _see_more(run.task_name)]
    parts.append(f"</ul><p>{e(closing)}</p>")
    msg.add_alternative("<html><body>" + "\n".join(parts) + "</body></html>", subtype="html")
    return msg


def _deliver(ctx: Context, build) -> list[str]:  # type: ignore[no-untyped-def]
    """Build and send one message; the problems to report (none when it went out)."""
    try:
        refused = send_message(ctx, build())
        return ["refused: " + "; ".join(refused)] if refused else []
    except MailError as exc:
        return [str(exc)]
    except Exception as exc:  # noqa: BLE001 - a report must never break the run it reports on
        return [f"report not sent: {type(exc).__name__}: {exc}"]


def _handover_keys(ctx: Context, data: ExecutionReportData, problems: list[str]) -> dict[str, str]:
    """Recipient name -> age key when the task opted in to the encrypted hand-over (see core.handover)."""
    try:
        from core.handover import plan

        return plan(ctx, data.execution.task_id, [r.name for r in data.recipients if r.email])
    except Exception as exc:  # noqa: BLE001 - without the hand-over everyone still gets the counts
        problems.append(f"encrypted hand-over skipped: {type(exc).__name__}")
        return {}


def _handover_report(ctx: Context, data: ExecutionReportData, address: str, age_key: str) -> EmailMessage:
    """The report for one recipient with the run's new secrets attached, encrypted to their age key only."""
    from core.handover import attachment_name, encrypt_to, secrets_csv

    run = data.execution
    msg = build_report(data, [address], ctx.settings, handover=True)
    msg.add_attachment(encrypt_to(age_key, secrets_csv(ctx, run.id)), maintype="application", subtype="octet-stream",
                       filename=attachment_name(run.task_name, run.id))
    return msg


def send_execution_report(ctx: Context, execution_id: int) -> str | None:
    """Mail the report of an execution to its task's recipients; returns the delivery error, or None.

    Never raises for a delivery problem and never changes records or accounts: the error is only stored
    in Execution.mail_error (cleared on success). No recipients: nothing is sent, no error. Raises NotFound
    only for an execution id that does not exist (or, for an operator limited to node subtrees, that has no
    record in their scope: core.listings).
    """
    if ctx.operator:
        from core.listings import execution_detail
        from core.scopes import scope_filter

        if scope_filter(ctx) is not None:
            try:
                execution_detail(ctx, execution_id)
            except LookupError:
                raise NotFound(f"execution {execution_id} does not exist") from None
    try:
        data = execution_report_data(ctx.db, execution_id)
    except NotFound:
        raise
    except Exception as exc:  # noqa: BLE001 - the run is over and stored; only its report is lost
        error = f"report not built: {type(exc).__name__}"
        log.warning("execution %s: %s", execution_id, error)
        try:
            set_mail_error(ctx.db, execution_id, error)
        except Exception:  # noqa: BLE001 - nothing more to be done; the log line says it
            pass
        return error
    missing = [r.name if r.known else f"{r.name} (no such operator)" for r in data.recipients if not r.email]
    to = [r.email for r in data.recipients if r.email]
    if not data.recipients:
        return None
    problems: list[str] = []
    if missing:
        problems.append("no email address for " + ", ".join(missing))
    keys = _handover_keys(ctx, data, problems)
    plain_to = [r.email for r in data.recipients if r.email and r.name not in keys]
    if plain_to:
        problems += _deliver(ctx, lambda: build_report(data, plain_to, ctx.settings))
    for r in data.recipients:
        if r.email and r.name in keys:
            problems += _deliver(ctx, lambda r=r: _handover_report(ctx, data, r.email, keys[r.name]))  # type: ignore[misc]
    error = _scrub("; ".join(problems), data.secrets) if problems else ""
    try:
        set_mail_error(ctx.db, execution_id, error)
    except Exception:  # noqa: BLE001 - the delivery result is still returned and logged
        log.exception("execution %s: could not store the mail error", execution_id)
    if error:
        log.warning("execution %s (%s): report not delivered: %s", execution_id, data.execution.task_name, error)
    else:
        log.info("execution %s (%s): report sent to %s", execution_id, data.execution.task_name, ", ".join(to))
    return error or None
