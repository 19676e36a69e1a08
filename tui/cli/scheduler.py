"""keyturn command groups: scheduler (unattended periodic runs) and mail (SMTP password, test, reports)."""

from __future__ import annotations

import argparse
import os
import getpass
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

# Only light modules here (`keyturn --help` registers every command); the handlers import the scheduler.
from core.config import DEFAULT_WORKERS
from core.errors import InputError
from core.types import utcnow
from tui.cli.stdin import without_line_end

from tui.cli.args import number_arg

if TYPE_CHECKING:
    from core.context import Context

log = logging.getLogger("keyturn.scheduler")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the scheduler and mail commands to the parser."""
    p = sub.add_parser(
        "scheduler", help="run periodic tasks when they are due (long-running, or --once for cron)",
        description="Run active periodic tasks when their interval or cron slot comes, with trigger 'schedule', "
                    "and mail each run's report to the task's recipients. Runs until SIGTERM or Ctrl-C, which "
                    "cancel running executions safely (records are settled, never lost) and exit 0. Several "
                    "schedulers may share one database: each due slot runs once. A slot missed while no "
                    "scheduler ran is run once at start. See docs/scheduler.md for a systemd unit.")
    p.add_argument("--once", action="store_true", help="run what is due now, wait for those runs, and exit")
    p.add_argument("--poll", type=number_arg(0.1, 86400, unit="seconds"), metavar="SECONDS",
                   help="seconds between checks for due tasks (default: scheduler_poll_seconds, 30); "
                        "the scheduler also wakes early when a slot is sooner")
    p.add_argument("--workers", type=number_arg(1, 256, int), default=DEFAULT_WORKERS, metavar="N",
                   help=f"tasks run at once at most (default {DEFAULT_WORKERS})")
    p.add_argument("--no-mail", action="store_true", help="do not mail execution reports")
    p.add_argument("--on-workers", action="store_true",
                   help="hand each due run to `keyturn worker` processes and follow it; if this machine dies "
                        "mid-run, the workers finish the run and mail its report (see docs/workers.md)")
    p.add_argument("--no-reconcile", action="store_true",
                   help="do not settle records a killed run left open before starting (default: settle them, "
                        "unless reconcile_on_start is off)")
    p.add_argument("--list", action="store_true", help="show the scheduled tasks and their next slots, run nothing")
    p.set_defaults(handler=cmd_scheduler)

    m = sub.add_parser("mail", help="SMTP password, test message, execution reports",
                       description="Mail settings live in the config file ([smtp] host, port, starttls, ssl, user, "
                                   "from, timeout) or KEYTURN_SMTP_* variables; the password is kept in the vault.")
    msub = m.add_subparsers(dest="mail_command", metavar="COMMAND")
    sp = msub.add_parser("set-password", help="store the SMTP password in the vault (read from stdin)",
                         description="Read the SMTP password from stdin (prompted without echo on a terminal) "
                                     "and store it encrypted in the vault; it is never a command-line argument.")
    sp.add_argument("--clear", action="store_true", help="forget the stored SMTP password instead")
    sp.set_defaults(handler=cmd_mail_set_password, permission="edit")
    tp = msub.add_parser("test", help="send a test message",
                         description="Send a short test message through the configured SMTP server; exits "
                                     "non-zero with the server's reason when it cannot be delivered.")
    tp.add_argument("address", metavar="ADDR", help="where to send it")
    tp.set_defaults(handler=cmd_mail_test, permission="edit")
    rp = msub.add_parser("report", help="(re)send the report of an execution to its task's recipients",
                         description="Mail the report of one execution to the recipients of its task; the "
                                     "delivery error, if any, is stored on the execution and printed.")
    rp.add_argument("execution", type=int, metavar="EXECUTION_ID", help="the execution's number")
    rp.set_defaults(handler=cmd_mail_report, permission="run")


# -- scheduler ----------------------------------------------------------------------------------------
def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s keyturn %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger("keyturn")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _list(ctx: Context) -> int:
    from core.scheduler import list_scheduled

    now = utcnow()
    tasks = list_scheduled(ctx)
    if not tasks:
        print("no active periodic tasks")
        return 0
    print(f"{'TASK':<32} {'SCHEDULE':<20} NEXT RUN (UTC)")
    for t in tasks:
        schedule = f"every {t.interval_hours} h" if t.interval_hours else (t.cron or "")
        due = t.due_at(now)
        when = due.strftime("%Y-%m-%d %H:%M:%S") + (" (due)" if due <= now else "")
        print(f"{t.name:<32} {schedule:<20} {when}")
    return 0


def cmd_scheduler(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn scheduler [--once] [--poll SECONDS] [--workers N] [--no-mail] [--list]."""
    from core.operators import mark_system
    from core.scheduler import Scheduler, settle_leftovers

    if args.list:
        return _list(ctx)
    # Runs as the system actor need no person's code, so only the service itself may start them.
    from core.config import ProcessIdentity
    from core.identity import require_service_identity

    require_service_identity(ProcessIdentity.current(os.environ))
    # The scheduler acts for nobody in particular: its runs are attributed to the system actor.
    mark_system(ctx)
    _setup_logging()
    sched = Scheduler(ctx, poll_seconds=args.poll, max_workers=args.workers, notify=not args.no_mail,
                      on_workers=args.on_workers)
    sched.runner = sched._runner()  # fail now, not at the first due slot, if the engine cannot load

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Event.set takes a lock the interrupted main thread may hold: do the stopping in another thread.
        name = signal.Signals(signum).name
        threading.Thread(target=_stop, args=(name,), daemon=True).start()

    def _stop(name: str) -> None:
        if sched.stopping:
            log.info("%s again: still waiting for running executions to settle", name)
            return
        sched.stop()
        log.info("%s received: no new runs; cancelling running executions", name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ctx.settings.reconcile_on_start and not args.no_reconcile:
            settle_leftovers(ctx)
        if args.once:
            outcomes = sched.run_once()
            if not outcomes:
                log.info("nothing due")
            return 1 if any(o.error for o in outcomes) else 0
        sched.serve()
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- mail -----------------------------------------------------------------------------------------------
def cmd_mail_set_password(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn mail set-password [--clear]: the password comes from stdin, never from argv."""
    from core.notify import store_smtp_password

    if args.clear:
        store_smtp_password(ctx, None)
        print("SMTP password forgotten")
        return 0
    if sys.stdin.isatty():
        password = getpass.getpass("SMTP password: ")
    else:
        password = without_line_end(sys.stdin.readline())
    if not password:
        raise InputError("password: stdin gave an empty SMTP password")
    if "\r" in password or "\n" in password:
        raise InputError("password: the SMTP password from stdin contains a carriage return (only one \\n or \\r\\n "
                         "line end is removed); a password cannot contain a line break")
    store_smtp_password(ctx, password)
    print("SMTP password stored in the vault")
    return 0


def cmd_mail_test(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn mail test ADDR."""
    from core.notify import send_test_message

    send_test_message(ctx, args.address)
    s = ctx.settings
    print(f"test message sent to {args.address} via {s.smtp_host}:{s.smtp_port}")
    return 0


def cmd_mail_report(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn mail report EXECUTION_ID."""
    from core.notify import send_execution_report

    error = send_execution_report(ctx, args.execution)
    if error:
        print(f"keyturn: error: report of execution {args.execution} not delivered: {error}", file=sys.stderr)
        return 1
    print(f"report of execution {args.execution} sent (or no recipients)")
    return 0
