"""Database writes off the UI thread: a form save, a removal after a confirmation, a pin, an import run in a thread
worker of the App, and their outcome comes back to the UI thread once the write has committed (issue 12).

    write_in_thread(self, "Removing asset web1", lambda: svc.remove_asset(ctx, "web1"), self._removed)

done(result) runs on the UI thread after the use case returned (so after its transaction committed), and only
while the node that asked is still mounted. failed(exc) runs there for any failure, so a node can end its "in
flight" state; the failures of a type in `shows` are the node's to show (a form puts core's error on its field's
line, a step-up asks for a code), any other reaches the App's one worker handler, in the words the CLI prints.
The worker belongs to the App, not to the modal or screen that asked: a write is never cut short because the
node that started it closed, and a failure whose node is gone is shown by the App.

The app counts writes in flight (WriteCounter at app.writes); tests wait on that instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from textual.app import App
from textual.dom import DOMNode
from textual.worker import Worker

from core.errors import KeyturnError

T = TypeVar("T")
WRITE_GROUP = "write"


class WriteCounter:
    """How many writes are in flight: started, their outcome not applied (or their worker not ended) yet."""

    def __init__(self, app: App[Any]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Writes whose outcome is not applied yet, or whose worker has not ended (a failure for the App's
        handler is shown once it has)."""
        workers = sum(1 for w in self._app.workers if w.group == WRITE_GROUP and not w.is_finished)
        return max(self._pending, workers)

    def begin(self) -> None:
        with self._lock:
            self._pending += 1

    def end(self) -> None:
        with self._lock:
            self._pending -= 1

    async def settled(self, poll: float = 0.005) -> None:
        """Return once no write is in flight."""
        while self.pending:
            await asyncio.sleep(poll)


def _mounted(node: DOMNode) -> bool:
    """Whether node can still show an outcome (the App itself counts: it is the DOM's root)."""
    return node.is_dom_root or node.is_attached


def write_in_thread(node: DOMNode, name: str, write: Callable[[], T], done: Callable[[T], None], *,
                    failed: Callable[[Exception], object] | None = None,
                    shows: tuple[type[Exception], ...] = (KeyturnError,)) -> Worker[None]:
    """Run write() in a thread worker of the App; done(result) on the UI thread once it returned, failed(exc) on
    the UI thread when it raised. A failure not of a type in `shows` (or with no failed, or whose node is gone)
    also reaches the App's worker handler, titled "<name> failed"."""
    app = node.app
    counter = getattr(app, "writes", None)
    counter = counter if isinstance(counter, WriteCounter) else None

    def apply(outcome: Callable[[], None]) -> None:
        # On the App's message loop (the UI thread), which outlives any screen: the count always comes down.
        try:
            if _mounted(node):
                outcome()
        finally:
            # A write may change who may do what (an operator added or enrolled): the app reads it again.
            refresh = getattr(app, "refresh_standing", None)
            if callable(refresh):
                refresh()
            if counter is not None:
                counter.end()

    def job() -> None:
        try:
            result = write()
        except Exception as exc:
            handled = failed is not None and isinstance(exc, shows) and _mounted(node)
            if failed is None or not app.call_later(apply, partial(failed, exc)):
                if counter is not None:
                    counter.end()
                raise
            if not handled:
                raise
            return
        if not app.call_later(apply, partial(done, result)) and counter is not None:
            counter.end()  # the app is closing: nothing is left to show it

    if counter is not None:
        counter.begin()
    return app.run_worker(job, thread=True, group=WRITE_GROUP, name=name, exit_on_error=False)
