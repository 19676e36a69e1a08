"""Database writes off the UI thread: a form save, a removal after a confirmation, a pin, an import run in a thread
worker of the App, and their outcome comes back to the UI thread once the write has committed (issue 12).

    write_in_thread(self, "Removing asset web1", lambda: svc.remove_asset(ctx, "web1"), self._removed,
                    failed=self._not_removed)

done(result) runs on the UI thread after the use case returned (so after its transaction committed), and only
while the node that asked is still mounted. A failure goes first to failed(exc) on the UI thread while that node
is mounted (a form puts a field's error on its line, a step-up asks for a code); when that is not given, the node
is gone or failed returns False, the App's one worker handler shows it in the words the CLI prints. The worker belongs to the App, not to the modal or screen
that asked: a write is never cut short because the node that started it closed.

The app counts writes in flight (WriteCounter); tests wait on that instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

T = TypeVar("T")
WRITE_GROUP = "write"


@dataclass
class _Write:
    node: DOMNode
    done: Callable[[Any], None]
    failed: Callable[[Exception], bool] | None


class WriteCounter:
    """The writes in flight, each with what to do on the UI thread once it ends."""

    def __init__(self) -> None:
        self._writes: dict[Worker[Any], _Write] = {}  # touched on the UI thread only

    @property
    def pending(self) -> int:
        """Writes in flight (their outcome not handled yet)."""
        return len(self._writes)

    def begin(self, worker: Worker[Any], write: _Write) -> None:
        self._writes[worker] = write

    def finished(self, event: Worker.StateChanged) -> bool:
        """Hand a write worker's outcome to its node on the UI thread: True when handled here, False when it is
        not a write or its failure is for the App's handler to show."""
        write = self._writes.get(event.worker)
        if write is None or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return False
        try:
            if event.state == WorkerState.SUCCESS:
                if write.node.is_attached:
                    write.done(event.worker.result)
                return True
            error = event.worker.error
            if (event.state == WorkerState.ERROR and isinstance(error, Exception) and write.failed is not None
                    and write.node.is_attached):
                return write.failed(error)  # else the App shows it: a closed form cannot
            return event.state == WorkerState.CANCELLED
        finally:
            # Counted until its outcome is applied: a reload that done() started is counted by the reads by then.
            self._writes.pop(event.worker, None)

    async def settled(self, poll: float = 0.005) -> None:
        """Return once no write is in flight."""
        while self._writes:
            await asyncio.sleep(poll)


def write_in_thread(node: DOMNode, name: str, write: Callable[[], T], done: Callable[[T], None], *,
                    failed: Callable[[Exception], bool] | None = None) -> Worker[T]:
    """Run write() in a thread worker of the App; done(result) on the UI thread once it returned, failed(exc) on
    the UI thread when it raised (True: handled; else the App shows it, titled "<name> failed")."""
    app = node.app
    counter = getattr(app, "writes", None)
    if not isinstance(counter, WriteCounter):
        raise TypeError(f"{type(app).__name__} has no WriteCounter at .writes")
    worker: Worker[T] = app.run_worker(write, thread=True, group=WRITE_GROUP, name=name, exit_on_error=False)
    # Its outcome arrives as a message the UI thread handles only after this returns: registered in time.
    counter.begin(worker, _Write(node, done, failed))
    return worker
