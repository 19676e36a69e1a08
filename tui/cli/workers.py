"""keyturn command: `keyturn worker`, a process that works off runs queued with `keyturn task run --workers`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from typing import TYPE_CHECKING

# Only light modules here (`keyturn --help` registers every command); the handler imports core.workers.
from core.config import DEFAULT_LEASE_SECONDS, DEFAULT_POLL_SECONDS
from core.events import Event
from tui.cli.args import number_arg

if TYPE_CHECKING:
    from core.context import Context

log = logging.getLogger("keyturn.worker")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the worker command to the parser."""
    p = sub.add_parser(
        "worker", help="work off runs queued with `task run --workers` (long-running, or --once)",
        description="Take work units (one asset with its accounts) of runs queued for workers, from the shared "
                    "database, under a lease renewed while the unit is worked on. A unit whose worker died is "
                    "taken over once its lease expires: its open records are settled by probing first. Needs the "
                    "vault's master key in this machine's data directory (0600); refuses to start with another "
                    "key. SIGTERM or Ctrl-C: no new unit is taken, the units in hand are finished, exit 0. "
                    "See docs/workers.md.")
    p.add_argument("--id", dest="worker_id", metavar="NAME",
                   help="this worker's name in logs and in the database (default: HOST:PID)")
    p.add_argument("--concurrency", type=number_arg(1, 256, int), metavar="N",
                   help="units (assets) worked on at once (default: the concurrency setting, 32)")
    p.add_argument("--once", action="store_true", help="work off what is queued now, then exit")
    p.add_argument("--lease", type=number_arg(1, 3600), default=DEFAULT_LEASE_SECONDS, metavar="SECONDS",
                   help=f"how long a unit stays this worker's without a renewal (default {DEFAULT_LEASE_SECONDS:g}); "
                        "renewed every third of it; a dead worker's units wait this long for another")
    p.add_argument("--poll", type=number_arg(0.1, 3600), default=DEFAULT_POLL_SECONDS, metavar="SECONDS",
                   help=f"seconds between looks for queued units when idle (default {DEFAULT_POLL_SECONDS:g})")
    p.set_defaults(handler=cmd_worker)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s keyturn %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger("keyturn")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def cmd_worker(ctx: Context, args: argparse.Namespace) -> int:
    """keyturn worker [--id NAME] [--concurrency N] [--once] [--lease SECONDS] [--poll SECONDS]."""
    from core.operators import mark_system
    from core.workers import Worker
    from core.config import ProcessIdentity
    from core.identity import require_service_identity

    require_service_identity(ProcessIdentity.current(os.environ), "a worker")
    mark_system(ctx)  # a worker acts for the run's operator, recorded on the execution; its own acts are the system's
    _setup_logging()
    lock = threading.Lock()
    worker: Worker | None = None

    def show(event: Event) -> None:
        with lock:
            print(f"worker {worker.worker_id if worker else '?'}: {event.text()}", file=sys.stderr, flush=True)

    worker = Worker(ctx, worker_id=args.worker_id, concurrency=args.concurrency, lease_seconds=args.lease,
                    poll_seconds=args.poll, on_event=show)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        assert worker is not None
        threading.Thread(target=worker.stop, daemon=True).start()  # never take a lock inside the handler
        log.info("%s received: no new unit; finishing the units in hand", signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("worker %s started (concurrency %d, lease %gs)%s", worker.worker_id, worker.concurrency, args.lease,
                 "; --once" if args.once else "")
        done = worker.serve(once=args.once)
        log.info("worker %s stopped after %d units", worker.worker_id, done)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
