"""keyturn command group: change records, retries, reconcile, and the `task run` command's engine side.

Exit codes of run, retry and reconcile: 0 when every account is confirmed changed (or nothing was open), 1 when
any record failed or stays unverified, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

# Only light modules here (`keyturn --help` registers every command); the handlers import the services.
from core.events import AccountSettled, Event, ExecutionStarted
from core import types as rec
from core.types import ExecutionInfo, RecordInfo
from core.wording import plural

if TYPE_CHECKING:
    from core.context import Context


# -- formatting ------------------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _short(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def record_dict(r: RecordInfo) -> dict[str, Any]:
    """JSON form of a record (never a secret)."""
    return {
        "id": r.id, "execution": r.execution_id, "task": r.task_name, "asset": r.asset_name, "account": r.username,
        "type": "ssh-key" if r.secret_type == "ssh_key" else r.secret_type, "status": r.status, "error": r.error,
        "attempt": r.attempt, "retry_of": r.retry_of, "created_at": _iso(r.created_at),
        "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
    }


def execution_dict(e: ExecutionInfo) -> dict[str, Any]:
    """JSON form of an execution summary."""
    return {
        "id": e.id, "task": e.task_name, "trigger": e.trigger, "status": e.status, "operator": e.operator,
        "started_at": _iso(e.started_at), "finished_at": _iso(e.finished_at), "total": e.total,
        "succeeded": e.succeeded, "failed": e.failed, "unverified": e.unverified,
    }


def _print_records(records: list[RecordInfo], out: TextIO) -> None:
    if not records:
        print("no records", file=out)
        return
    rows = [("ID", "EXEC", "TASK", "ASSET", "ACCOUNT", "STATUS", "CREATED", "FINISHED", "ERROR")]
    rows += [(str(r.id), str(r.execution_id), r.task_name, r.asset_name, r.username, r.status, _short(r.created_at),
              _short(r.finished_at), r.error) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1], file=out)


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Prints one line per engine event; on a terminal also a compact progress line kept at the bottom."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.total = 0
        self.counts = {rec.SUCCESS: 0, rec.FAILED: 0, rec.UNVERIFIED: 0}
        self._lock = threading.Lock()
        self._status_shown = False

    def __call__(self, event: Event) -> None:
        """The engine's on_event callback (called from worker threads)."""
        with self._lock:
            if isinstance(event, ExecutionStarted):
                self.total = event.total
            if isinstance(event, AccountSettled) and event.status in self.counts:
                self.counts[event.status] += 1
            if self._status_shown:
                self.out.write("\r\x1b[K")
            self.out.write(event.text() + "\n")
            if self.tty and self.total:
                done = sum(self.counts.values())
                self.out.write(f"[{done}/{self.total}] {self.counts[rec.SUCCESS]} ok, {self.counts[rec.FAILED]} failed, "
                               f"{self.counts[rec.UNVERIFIED]} unverified")
                self._status_shown = True
            self.out.flush()

    def close(self) -> None:
        """End the progress line."""
        with self._lock:
            if self._status_shown:
                self.out.write("\r\x1b[K")
                self.out.flush()
                self._status_shown = False


@contextmanager
def _cancel_on_signal(cancel: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM) asks the run to stop safely; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, _frame: object) -> None:
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()
        print("keyturn: cancelling: accounts in flight finish, the rest are not touched (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    old_int = signal.signal(signal.SIGINT, ask)
    old_term = signal.signal(signal.SIGTERM, ask)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _run_and_report(ctx: Context, args: argparse.Namespace, work: Callable[..., ExecutionInfo], *,
                    mail: bool = True) -> int:
    """Run work(cancel=..., on_event=...), print progress and the result; exit 0 only if all succeeded."""
    from core.services import views

    as_json = bool(getattr(args, "json", False))
    progress = Progress(sys.stderr if as_json else sys.stdout, tty=False if as_json else None)
    cancel = threading.Event()
    try:
        with _cancel_on_signal(cancel):
            info = work(cancel=cancel, on_event=progress)
    finally:
        progress.close()
    if mail:
        _mail_report(ctx, info, sys.stderr)
    records = views.records_by_id(ctx, execution_id=info.id)
    if as_json:
        print(json.dumps({"execution": execution_dict(info), "records": [record_dict(r) for r in reversed(records)]},
                         indent=2))
    else:
        bad = [r for r in records if r.status != rec.SUCCESS]
        if bad:
            print(f"\n{plural(len(bad), 'account')} not changed or not confirmed:")
            _print_records(list(reversed(bad)), sys.stdout)
            print("retry with: keyturn retry --record " + " ".join(str(r.id) for r in reversed(bad)))
    return 0 if info.total == info.succeeded else 1


def _mail_report(ctx: Context, info: ExecutionInfo, out: TextIO) -> None:
    """Mail the execution's report to the task's recipients; a delivery error is only reported and stored."""
    from core.notify import send_execution_report

    error = send_execution_report(ctx, info.id)
    if error:
        print(f"keyturn: report not mailed: {error}", file=out, flush=True)


def _maybe_reconcile(ctx: Context, args: argparse.Namespace) -> None:
    if getattr(args, "no_reconcile", False) or not ctx.settings.reconcile_on_start:
        return
    from core.reconcile import reconcile_if_needed

    summary = reconcile_if_needed(ctx)
    if not summary.nothing_to_do:
        print(summary.text(), file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


# -- commands --------------------------------------------------------------------------------------
def cmd_task_run(ctx: Context, args: argparse.Namespace) -> int:
    """`keyturn task run NAME [--json] [--no-reconcile] [--workers]`: settle earlier runs, then run the task now
    (in this process, or queued for `keyturn worker` processes and followed until it finished)."""
    from core.engine import run_task

    _maybe_reconcile(ctx, args)
    if getattr(args, "workers", False):
        from core.workers import follow, queue_run

        def queued(*, cancel: threading.Event, on_event: Callable[[Event], None]) -> ExecutionInfo:
            execution_id = queue_run(ctx, args.name, trigger="cli", on_event=on_event)
            return follow(ctx, execution_id, on_event=on_event, cancel=cancel)

        # The worker that finishes the last unit mails the report, as an in-process run's caller does.
        return _run_and_report(ctx, args, queued, mail=False)
    return _run_and_report(ctx, args, lambda **kw: run_task(ctx, args.name, trigger="cli", **kw))


def _cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    if args.status and args.status not in rec.RECORD_STATUSES:
        from core.errors import InputError

        raise InputError(f"--status: must be one of {', '.join(rec.RECORD_STATUSES)}, got {args.status!r}")
    from core.listings import records_by_id

    records = records_by_id(ctx, task=args.task, status=args.status, execution_id=args.execution, limit=args.limit)
    if args.json:
        print(json.dumps([record_dict(r) for r in records], indent=2))
    else:
        _print_records(records, sys.stdout)
    return 0


def _cmd_follow(ctx: Context, args: argparse.Namespace) -> int:
    from core.workers import follow

    progress = Progress(sys.stdout)
    try:
        info = follow(ctx, args.execution, on_event=progress)
    finally:
        progress.close()
    return 0 if info.total == info.succeeded else 1


def _cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    from core.engine import retry_failed, retry_records
    from core.errors import InputError

    if args.record and (args.task or args.failed):
        raise InputError("retry: give either --record IDs or --task NAME --failed, not both")
    if not args.record and not (args.task and args.failed):
        raise InputError("retry: give --record ID ... or --task NAME --failed")
    if getattr(args, "workers", False):
        from core.workers import follow, queue_retry, queue_retry_failed

        def queued(*, cancel: threading.Event, on_event: Callable[[Event], None]) -> ExecutionInfo:
            execution_id = (queue_retry(ctx, args.record, on_event=on_event) if args.record
                            else queue_retry_failed(ctx, args.task, on_event=on_event))
            return follow(ctx, execution_id, on_event=on_event, cancel=cancel)

        return _run_and_report(ctx, args, queued, mail=False)  # the worker that finishes the run mails the report
    if args.record:
        return _run_and_report(ctx, args, lambda **kw: retry_records(ctx, args.record, **kw))
    return _run_and_report(ctx, args, lambda **kw: retry_failed(ctx, args.task, **kw))


def _cmd_reconcile(ctx: Context, args: argparse.Namespace) -> int:
    from core.services import views
    from core.reconcile import reconcile

    cancel = threading.Event()
    progress = None if args.json else Progress(sys.stdout, tty=False)
    with _cancel_on_signal(cancel):
        summary = reconcile(ctx, on_event=progress, cancel=cancel)
    left = views.open_records(ctx)
    if args.json:
        print(json.dumps({
            "probed": summary.probed, "succeeded": summary.succeeded, "failed": summary.failed,
            "unverified": summary.unverified, "interrupted_executions": summary.interrupted,
            "locks_released": summary.locks_released, "skipped_live": summary.skipped_live,
            "waiting": summary.waiting,
            "wait_until": summary.wait_until.isoformat() if summary.wait_until else None,
            "records": [{"id": i, "status": s, "error": e} for i, s, e in summary.records],
            "still_open": [r.id for r in left],
        }, indent=2))
    else:
        print(summary.text())
    return 1 if any(r.status != rec.PENDING and r.status != rec.PUSHING for r in left) or summary.unverified else 0


def _positive(value: str) -> int:
    """argparse type: a whole number of at least 1 (a negative limit used to list everything)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {value!r})") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return number


def register(sub: argparse._SubParsersAction) -> None:
    """Add the records, retry and reconcile commands (`task run` is registered by tui.cli.tasks)."""
    records = sub.add_parser("records", help="list change records (one per account per run)",
                             description="List change records, newest first. Secrets are never shown here.")
    cmds = records.add_subparsers(dest="records_command", metavar="SUBCOMMAND", parser_class=type(records))
    p = cmds.add_parser("list", help="list change records", description="List change records, newest first: id, "
                        "asset, account, status, error, execution and dates.")
    p.add_argument("--task", metavar="NAME", help="only records of this task")
    p.add_argument("--status", metavar="S", help="only records in this status: " + ", ".join(rec.RECORD_STATUSES))
    p.add_argument("--execution", type=int, metavar="ID", help="only records of this execution")
    p.add_argument("--limit", type=_positive, metavar="N", help="at most N records")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_list)

    p = cmds.add_parser("follow", help="follow a run as its accounts settle, until it ends (any machine)",
                        description="Print each account of an execution as it settles, then the execution's end, by "
                        "reading the shared database every half second: works from any machine, for runs on "
                        "workers and in-process runs alike, and shows what settled before it started. Ctrl-C stops "
                        "following only (the run goes on). Exit 0 when every account changed, 1 otherwise.")
    p.add_argument("execution", type=int, metavar="EXECUTION_ID", help="the execution's number")
    p.set_defaults(handler=_cmd_follow)

    p = sub.add_parser("retry", help="retry failed or unverified records",
                       description="Retry change records in a new execution: an unverified record re-pushes the same "
                       "candidate secret, a failed one gets a fresh secret (or the task's specific one).",
                       epilog="Examples: keyturn retry --record 12 13; keyturn retry --task web-root --failed; "
                       "keyturn retry --task web-root --failed --workers")
    p.add_argument("--record", type=int, nargs="+", action="extend", metavar="ID", help="record ids to retry")
    p.add_argument("--task", metavar="NAME", help="with --failed: the task whose failed accounts to retry")
    p.add_argument("--failed", action="store_true",
                   help="with --task: retry every account whose latest record failed or is unverified")
    p.add_argument("--json", action="store_true", help="print the execution result as JSON")
    p.add_argument("--workers", action="store_true",
                   help="queue the retry for `keyturn worker` processes, as `task run --workers` does, and follow "
                        "it here until it finished; the workers mail the report")
    p.set_defaults(handler=_cmd_retry, permission="run")

    p = sub.add_parser("reconcile", help="settle records left open by interrupted runs",
                       description="Probe every pending, pushing or unverified record of runs that are no longer "
                       "alive by logging in with the new, then the old secret, and settle it; mark dead runs "
                       "interrupted. `task run` does this first unless --no-reconcile.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_reconcile, permission="run")
