"""Heartbeats: log in with the vault's current secret of each account, change nothing, record what the host says.

Per account: `ok`, `rejected` (someone changed it outside keyturn), `locked` (the platform says the account is
locked: `passwd -S` asked as root after a rejected login), `unreachable` (network, host key, policy: the
secret was not tested). Only the existing verify functions log in, so a heartbeat judges exactly as a
rotation's verification does.

Database accounts (postgresql, mysql, mariadb, redis) log in with the database's own protocol, and one behind
an SSH gateway through the gateway's tunnel, opened once per asset for the run and shared by its accounts: a
refused password is `rejected`, a server or gateway that cannot be reached is `unreachable` (with the reason),
and a server that lets anyone in (trust) is `unreachable` too, since the secret was not tested.
"""

from __future__ import annotations

import shlex
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from core import ssh
from core.context import Context
from core.drivers import gateway
from core.drivers.base import DriverError, Verify, open_driver, verify_key, verify_password
from core.errors import InputError
from core.ssh import Timeouts
from storage import drift as store
from storage.drift import HEARTBEAT_STATUSES, HeartbeatInfo, NewHeartbeat
from storage.inventory import account_secrets, get_asset_by_id, privileged_account
from storage.types import AssetInfo, ExecutionInfo

OK, REJECTED, LOCKED, UNREACHABLE = HEARTBEAT_STATUSES
LOCK_CHECK_PLATFORMS = ("linux", "unix")


@dataclass(frozen=True)
class HeartbeatReport:
    """The results of one heartbeat run over a task's accounts."""

    task_name: str
    results: list[NewHeartbeat]
    reconciled: ExecutionInfo | None = None  # the run that set new secrets on rejected accounts, if any

    @property
    def all_ok(self) -> bool:
        """Whether every account answered ok (a task without accounts counts as ok)."""
        return all(r.status == OK for r in self.results)

    def counts(self) -> dict[str, int]:
        """Number of accounts per status (every status present, zero when none)."""
        out = {s: 0 for s in HEARTBEAT_STATUSES}
        for r in self.results:
            out[r.status] += 1
        return out


ResultCallback = Callable[[NewHeartbeat], None]


def _login(asset: AssetInfo, username: str, secret_type: str, secret: str | None, passphrase: str | None,
           timeouts: Timeouts) -> Verify:
    if secret_type == "ssh_key":
        return verify_key(asset, username, secret, passphrase, timeouts)
    return verify_password(asset, username, secret, timeouts)


def _locked_on_host(ctx: Context, asset: AssetInfo, username: str, timeouts: Timeouts) -> bool | None:
    """Ask the host as root whether username's password is locked (`passwd -S`); None when it cannot say."""
    if asset.platform not in LOCK_CHECK_PLATFORMS:
        return None
    priv = privileged_account(ctx.db, asset.id)
    if priv is None or priv.username == username:
        return None
    creds = account_secrets(ctx.db, priv.id)
    try:
        driver = open_driver(asset, priv.username,
                             password=creds.secret if priv.secret_type == "password" else None,
                             pkey_text=creds.secret if priv.secret_type == "ssh_key" else None,
                             passphrase=creds.passphrase, become=creds.become, timeouts=timeouts)
    except (ssh.SSHError, DriverError):
        return None
    try:
        run = getattr(driver, "run_as_root", None)
        if run is None:
            return None
        result = run("IFS= read -r kt_end || kt_end=\n"
                     f"passwd -S {shlex.quote(username)}\n", [], [creds.secret, creds.become])
        if not isinstance(result, tuple):
            return None
        code, out, _err = result
        if code != 0:
            return None
        for line in out.splitlines():
            fields = line.split()
            # Debian/Ubuntu print "user L ...", RHEL prints "user LK ..." for a locked password.
            if len(fields) >= 2 and fields[0] == username:
                return fields[1] in ("L", "LK")
        return None
    finally:
        driver.close()


def check_account(ctx: Context, account_id: int, *, task_id: int | None = None,
                  timeouts: Timeouts | None = None) -> NewHeartbeat:
    """Log in once with the account's current secret from the vault and classify the answer (nothing stored)."""
    from storage.executions import account_info

    timeouts = timeouts or Timeouts.from_settings(ctx.settings)
    acc = account_info(ctx.db, account_id)
    asset = get_asset_by_id(ctx.db, acc.asset_id)
    creds = account_secrets(ctx.db, account_id)
    # A database behind an SSH gateway is reached through its tunnel (shared: run_heartbeat already holds it
    # for the asset's accounts). A gateway that cannot be reached makes the account unreachable, saying why.
    try:
        held = gateway.acquire(ctx.db, asset, timeouts)
    except (ssh.SSHError, DriverError) as exc:
        return NewHeartbeat(account_id=acc.id, task_id=task_id, asset_name=acc.asset_name, username=acc.username,
                            account_version=acc.version, status=UNREACHABLE,
                            reason=ssh.scrub(f"gateway {asset.gateway or asset.gateway_id}: {exc}",
                                             [creds.secret, creds.passphrase]),
                            checked_at=datetime.now(timezone.utc))
    try:
        verdict = _login(asset, acc.username, acc.secret_type, creds.secret, creds.passphrase, timeouts)
    finally:
        if held:
            gateway.release(asset)
    if verdict.ok:
        status, reason = OK, ""
    elif verdict.rejected:
        locked = _locked_on_host(ctx, asset, acc.username, timeouts) if acc.secret_type == "password" else None
        if locked:
            status, reason = LOCKED, "the host says the account is locked"
        else:
            status, reason = REJECTED, "the host rejected the vault's current secret (changed outside keyturn?)"
    else:
        status, reason = UNREACHABLE, ssh.scrub(verdict.reason, [creds.secret, creds.passphrase])
    return NewHeartbeat(account_id=acc.id, task_id=task_id, asset_name=acc.asset_name, username=acc.username,
                        account_version=acc.version, status=status, reason=reason,
                        checked_at=datetime.now(timezone.utc))


def run_heartbeat(ctx: Context, task_name: str, *, cancel: threading.Event | None = None,
                  on_result: ResultCallback | None = None, reconcile: bool | None = None) -> HeartbeatReport:
    """Check every target account of a task now, store each result, and audit the run.

    reconcile (default: the task's reconcile_drift option) then gives rejected accounts a new secret.
    """
    from core.runguard import check_scope
    from core.scopes import task_in_scope, task_visible
    from core.targets import preview
    from storage.tasks import get_task

    from core.errors import NotFound

    try:
        spec = get_task(ctx.db, task_name)
        task_visible(ctx, spec.id, task_name)  # a task outside the acting operator's scope is not there
    except NotFound:
        raise InputError(f"task: no task named {task_name!r}") from None
    targets = preview(ctx, spec).targets
    # Logging in with the vault's secrets is acting on the hosts: the whole task must lie in the scope.
    task_in_scope(ctx, spec, "check")
    check_scope(ctx, spec, ((t.asset_id, t.asset_name) for t in targets))
    timeouts = Timeouts.from_settings(ctx.settings)
    cancel = cancel or threading.Event()
    by_asset: dict[int, list[int]] = defaultdict(list)
    for t in targets:
        by_asset[t.asset_id].append(t.account_id)
    results: list[NewHeartbeat] = []
    lock = threading.Lock()

    def work(account_ids: list[int]) -> None:
        asset_id = next(t.asset_id for t in targets if t.account_id == account_ids[0])
        try:
            asset = get_asset_by_id(ctx.db, asset_id)
        except Exception:  # noqa: BLE001 - removed meanwhile: check_account reports each account
            asset = None
        if asset is None or asset.gateway_id is None:
            check_all(account_ids)
            return
        with gateway.opened(ctx.db, asset, timeouts):  # one tunnel for all of this database's accounts
            check_all(account_ids)

    def check_all(account_ids: list[int]) -> None:
        for account_id in account_ids:
            if cancel.is_set():
                return
            try:
                result = check_account(ctx, account_id, task_id=spec.id, timeouts=timeouts)
            except Exception as exc:  # noqa: BLE001 - one bad account never stops the others
                acc_target = next(t for t in targets if t.account_id == account_id)
                result = NewHeartbeat(account_id, spec.id, acc_target.asset_name, acc_target.username, 0, UNREACHABLE,
                                      f"internal error: {type(exc).__name__}", datetime.now(timezone.utc))
            with lock:
                results.append(result)
            if on_result is not None:
                try:
                    on_result(result)
                except Exception:  # noqa: BLE001 - a broken display must not stop the checks
                    pass

    workers = max(1, min(ctx.settings.concurrency, len(by_asset)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keyturn-heartbeat") as pool:
        for fut in [pool.submit(work, ids) for ids in by_asset.values()]:
            fut.result()
    results.sort(key=lambda r: (r.asset_name, r.username))
    store.add_heartbeats(ctx.db, results)
    from core.audit import record_event

    report = HeartbeatReport(spec.name, results)
    record_event(ctx, "heartbeat.run", "task", spec.id, {"task": spec.name, **report.counts()})
    assert spec.id is not None
    if reconcile is None:
        reconcile = store.get_task_options(ctx.db, spec.id).reconcile_drift
    if reconcile and not cancel.is_set():
        report = HeartbeatReport(spec.name, results, reconcile_drifted(ctx, spec.name, results, cancel=cancel))
    return report


def reconcile_drifted(ctx: Context, task_name: str, results: list[NewHeartbeat], *,
                      cancel: threading.Event | None = None) -> ExecutionInfo | None:
    """Give every `rejected` account a fresh secret through the privileged account (CyberArk's "reconcile").

    A normal execution with trigger "reconcile": the new secret is committed on its record before the host is
    touched, the push needs no old secret, and the login with the new one settles it. Locked and unreachable
    accounts are left alone: a new password would not unlock them, and an unreachable host cannot be changed.
    """
    from core.engine import _execute, _new_secret, _Planned  # the engine's own write-ahead path, unchanged
    from core.targets import preview
    from storage.tasks import get_task

    rejected = {r.account_id for r in results if r.status == REJECTED}
    if not rejected:
        return None
    spec = get_task(ctx.db, task_name)
    planned = [_Planned(t.account_id, t.asset_id, t.asset_name, t.username, t.secret_type, t.privileged, _new_secret(spec))
               for t in preview(ctx, spec).targets if t.account_id in rejected]
    if not planned:
        return None
    return _execute(ctx, spec, "reconcile", planned, cancel=cancel, on_event=None)


def latest(ctx: Context, status: str | None = None) -> list[HeartbeatInfo]:
    """The newest heartbeat of each account, optionally only those with one status."""
    if status is not None and status not in HEARTBEAT_STATUSES:
        raise InputError(f"status: {status!r} is not one of {', '.join(HEARTBEAT_STATUSES)}")
    return store.latest_heartbeats(ctx.db, status=status)


def drifted(ctx: Context) -> list[HeartbeatInfo]:
    """Accounts (in the acting operator's scope) whose newest heartbeat is not ok (the Overview's drift count)."""
    from core.scopes import scope_filter

    return [h for h in store.latest_heartbeats(ctx.db, scope=scope_filter(ctx)) if h.status != OK]


# -- scheduled heartbeats ---------------------------------------------------------------------------------
def claim_due_heartbeats(ctx: Context, now: datetime) -> list[str]:
    """Names of tasks whose heartbeat is due at now, each claimed for this scheduler (the slot moves on first)."""
    from core.schedule import next_runs

    claimed = []
    for task_id, name, opts in store.heartbeat_schedules(ctx.db):
        due = opts.next_heartbeat_at or now
        if due > now:
            continue
        nxt = next_runs(opts.heartbeat_interval_hours, opts.heartbeat_cron, now, count=1)[0]
        if store.claim_heartbeat(ctx.db, task_id, opts.next_heartbeat_at, nxt):
            claimed.append(name)
    return claimed


def next_heartbeat_due(ctx: Context) -> datetime | None:
    """The earliest next heartbeat of any task (None when none is scheduled)."""
    slots = [o.next_heartbeat_at for _i, _n, o in store.heartbeat_schedules(ctx.db) if o.next_heartbeat_at]
    return min(slots) if slots else None


def run_heartbeat_safely(ctx: Context, task_name: str) -> HeartbeatReport | None:
    """A scheduled heartbeat: never raises (the scheduler keeps going), logs what it found."""
    import logging

    log = logging.getLogger("keyturn.scheduler")
    try:
        report = run_heartbeat(ctx, task_name)
    except Exception as exc:  # noqa: BLE001 - one broken task must not stop the scheduler
        log.warning("task %s: heartbeat failed: %s", task_name, exc)
        return None
    log.info("task %s: heartbeat: %s", task_name, ", ".join(f"{n} {s}" for s, n in report.counts().items()))
    return report
