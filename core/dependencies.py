"""Dependent updates: after an account's secret changed, the places that use it follow (Delinea's "dependencies").

A task lists steps per asset: a command run as root on that asset (or on another one) with the new secret on
stdin as one line, after a successful change. The command line holds no secret. A failed step never undoes
the change: the record stays `success` (the host and the vault agree) and carries a dependency warning,
shown and retryable on its own with `retry_dependencies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core import ssh
from core.context import Context
from core.drivers.base import DriverError, HostDriver, PushResult, open_driver
from core.errors import InputError
from core.events import Event
from core.ssh import Timeouts
from storage import drift as store
from storage import executions as rec
from storage.drift import DependencyStep
from core.errors import NotFound
from storage.inventory import account_secrets, get_asset, privileged_account
from storage.types import RecordInfo

OK, FAILED = "ok", "failed"
EXIT_TRUNCATED = 91

# The secret is read into a shell variable from stdin and handed to the step's own stdin; only builtins
# (read, printf) touch it, so it never appears in a process's argv.
_SCRIPT = (
    "IFS= read -r kt_secret || kt_secret=\n"
    "IFS= read -r kt_end || kt_end=\n"
    f"if [ \"$kt_end\" != @END@ ]; then echo 'keyturn: input was cut short; nothing ran' >&2; exit {EXIT_TRUNCATED}; fi\n"
    "printf '%s\\n' \"$kt_secret\" | sh -c {command}\n"
)


@dataclass(frozen=True)
class DependencyRan(Event):
    """A dependency step ran after a change (ok, or failed with the reason)."""

    asset: str
    username: str
    record_id: int
    run_on: str
    status: str
    error: str = ""

    def text(self) -> str:
        tail = f": {self.error}" if self.error else ""
        return f"{self.asset} {self.username}: dependency on {self.run_on} {self.status}{tail}"


Emit = Callable[[Event], None]


def steps_for(steps: list[DependencyStep], asset_name: str) -> list[DependencyStep]:
    """The steps that follow a change of an account on asset_name ("*" follows every asset)."""
    return [s for s in steps if s.asset in (asset_name, "*")]


class _Connections:
    """One privileged connection per asset the steps run on, opened on first use."""

    def __init__(self, ctx: Context, timeouts: Timeouts) -> None:
        self.ctx, self.timeouts = ctx, timeouts
        self.open: dict[str, HostDriver | str] = {}

    def get(self, asset_name: str) -> HostDriver | str:
        if asset_name not in self.open:
            self.open[asset_name] = self._connect(asset_name)
        return self.open[asset_name]

    def _connect(self, asset_name: str) -> HostDriver | str:
        try:
            asset = get_asset(self.ctx.db, asset_name)
        except NotFound:
            return f"no asset named {asset_name!r}"
        priv = privileged_account(self.ctx.db, asset.id)
        if priv is None:
            return f"{asset_name}: no privileged account"
        creds = account_secrets(self.ctx.db, priv.id)
        try:
            return open_driver(asset, priv.username,
                               password=creds.secret if priv.secret_type == "password" else None,
                               pkey_text=creds.secret if priv.secret_type == "ssh_key" else None,
                               passphrase=creds.passphrase, become=creds.become, timeouts=self.timeouts)
        except (ssh.SSHError, DriverError) as exc:
            return ssh.scrub(str(exc), [creds.secret, creds.passphrase, creds.become])

    def close(self) -> None:
        for d in self.open.values():
            if not isinstance(d, str):
                d.close()


def _run_step(conns: _Connections, step: DependencyStep, record: RecordInfo, secret: str) -> str:
    """Run one step; '' when it worked, else why not (scrubbed)."""
    import shlex

    run_on = step.run_on or record.asset_name
    driver = conns.get(run_on)
    if isinstance(driver, str):
        return f"{run_on}: cannot connect: {driver}"
    run = getattr(driver, "run_as_root", None)
    if run is None:
        return f"{run_on}: its platform cannot run dependency steps"
    result = run(_SCRIPT.replace("{command}", shlex.quote(step.command)), [secret], [secret])
    if isinstance(result, PushResult):
        return f"{run_on}: {result.error or 'the step did not run'}"
    code, out, err = result
    if not driver.reached_root(out):  # type: ignore[attr-defined]
        return f"{run_on}: could not run the step as root: {_last(err) or f'exit {code}'}"
    if code != 0:
        return f"{run_on}: the step exited {code}: {_last(err) or 'no message'}"
    return ""


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return ssh_safe(lines[-1]) if lines else ""


def ssh_safe(text: str) -> str:
    """Host text without control characters (a host never writes escape sequences to a terminal)."""
    return "".join(c for c in text if c.isprintable())[:500]


def _follow(ctx: Context, conns: _Connections, steps: list[DependencyStep], record: RecordInfo,
            emit: Emit | None) -> str:
    """Run the steps of one successful record, store the outcome, return the error ('' when all worked)."""
    secret = rec.record_secrets_full(ctx.db, record.id).new
    errors: list[str] = []
    for step in steps:
        error = _run_step(conns, step, record, secret or "") if secret else "the record holds no new secret"
        error = ssh.scrub(error, [secret])
        if emit is not None:
            try:
                emit(DependencyRan(record.execution_id, asset=record.asset_name, username=record.username,
                                   record_id=record.id, run_on=step.run_on or record.asset_name,
                                   status=FAILED if error else OK, error=error))
            except Exception:  # noqa: BLE001 - a broken display must not stop the steps
                pass
        if error:
            errors.append(error)
    outcome = "; ".join(errors)
    store.set_dependency_outcome(ctx.db, record.id, FAILED if errors else OK, outcome)
    return outcome


def run_for_execution(ctx: Context, task_id: int | None, execution_id: int, emit: Emit | None = None) -> None:
    """Follow every successful record of an execution with its task's steps; never raises (the change stands)."""
    if task_id is None:
        return
    try:
        steps = store.get_task_options(ctx.db, task_id).dependencies
        if not steps:
            return
        records = [r for r in rec.list_records(ctx.db, execution_id=execution_id) if r.status == rec.SUCCESS]
        conns = _Connections(ctx, Timeouts.from_settings(ctx.settings))
        try:
            for r in sorted(records, key=lambda r: r.id):
                mine = steps_for(steps, r.asset_name)
                if mine:
                    _follow(ctx, conns, mine, r, emit)
        finally:
            conns.close()
    except Exception:  # noqa: BLE001 - a dependency problem must never undo or fail the change itself
        import logging

        logging.getLogger("keyturn.dependencies").exception("execution %s: dependency steps stopped", execution_id)


def retry_dependencies(ctx: Context, record_id: int, emit: Emit | None = None) -> str:
    """Run a successful record's dependency steps again; returns '' when they all worked, else the warning."""
    from core.audit import record_event

    try:
        r = rec.get_record(ctx.db, record_id)
    except NotFound:
        raise InputError(f"record {record_id}: no such change record") from None
    if r.status != rec.SUCCESS:
        raise InputError(f"record {record_id}: is {r.status}; dependency steps follow only a successful change")
    if r.task_id is None:
        raise InputError(f"record {record_id}: its task was deleted, so its dependency steps are gone")
    if r.account_id is None:
        raise InputError(f"record {record_id}: its account was removed from the inventory")
    current = account_secrets(ctx.db, r.account_id).secret
    if current != rec.record_secrets_full(ctx.db, record_id).new:
        raise InputError(f"record {record_id}: the account changed since; its secret is no longer this record's")
    steps = steps_for(store.get_task_options(ctx.db, r.task_id).dependencies, r.asset_name)
    if not steps:
        raise InputError(f"record {record_id}: the task has no dependency step for {r.asset_name}")
    conns = _Connections(ctx, Timeouts.from_settings(ctx.settings))
    try:
        outcome = _follow(ctx, conns, steps, r, emit)
    finally:
        conns.close()
    record_event(ctx, "record.dependencies-retry", "change_record", record_id,
                 {"status": FAILED if outcome else OK, "error": outcome})
    return outcome
