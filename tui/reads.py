"""Database reads off the UI thread: a screen hands a read to a thread worker and gets the plain data back as a
message, so the UI thread never waits on the database (issue 12).

    self.read_in_thread("records", lambda: list_records(ctx, **filters), self._show_records)

Each group holds one read at a time: a newer read of the same group cancels the older worker (exclusive) and
the older result, should it still arrive, is dropped, so a slow query never paints over a newer one. A failed
read reaches the user through the app's worker handler, in the words the CLI prints.

The app counts reads in flight (ReadCounter); tests wait on that instead of sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from textual.dom import DOMNode
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, get_current_worker

T = TypeVar("T")


class ReadCounter:
    """Which screen reads are in flight: (screen, group) pairs whose newest read is not shown (or failed) yet.

    A read superseded by a newer one of its group is not counted: only the newest can be shown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[tuple[int, str]] = set()

    @property
    def pending(self) -> int:
        """Reads in flight."""
        return len(self._pending)

    def begin(self, key: tuple[int, str]) -> None:
        with self._lock:
            self._pending.add(key)

    def end(self, key: tuple[int, str]) -> None:
        with self._lock:
            self._pending.discard(key)

    def busy(self, screen: int) -> bool:
        """Whether a read of that screen is in flight."""
        return any(k[0] == screen for k in list(self._pending))

    def end_all(self, screen: int) -> None:
        with self._lock:
            self._pending = {k for k in self._pending if k[0] != screen}

    async def settled(self, poll: float = 0.005) -> None:
        """Return once no read is in flight (a shown result may start the next read: keep waiting for it)."""
        while True:
            while self._pending:
                await asyncio.sleep(poll)
            await asyncio.sleep(0)  # let a message posted by the last read start its follow-up read
            if not self._pending:
                return


_READ_KEYS = itertools.count(1)


def read_off_ui(node: DOMNode, name: str, fetch: Callable[[], T], show: Callable[[T], None], *,
                finished: Callable[[], None] | None = None) -> Worker[None]:
    """Run fetch() in a thread worker of node; show(result) on the UI thread, then finished() (also after a
    failure, which reaches the App's worker handler). Counted in app.reads until both ran, so a test waiting on
    it finds the result shown; a read finished() starts is counted before this one ends.

    For the App and modals; a mode screen uses ThreadedReads.read_in_thread, which also drops stale results."""
    app = node.app
    counter = getattr(app, "reads", None)
    counter = counter if isinstance(counter, ReadCounter) else None
    key = (id(node), f"{name} {next(_READ_KEYS)}")
    if counter is not None:
        counter.begin(key)

    def done() -> None:
        try:
            if finished is not None:
                finished()
        finally:
            if counter is not None:
                counter.end(key)

    def job() -> None:
        try:
            app.call_from_thread(show, fetch())
        finally:
            app.call_from_thread(done)

    return node.run_worker(job, thread=True, exit_on_error=False, name=name)


class ReadDone(Message, bubble=False):
    """A read finished in its worker thread (data, or failed); handled by the screen that started it, on the
    UI thread."""

    def __init__(self, group: str, token: int, show: Callable[[Any], None], data: object, *,
                 failed: bool = False) -> None:
        super().__init__()
        self.group = group
        self.token = token
        self.show = show
        self.data = data
        self.failed = failed


class ThreadedReads(Screen[Any]):
    """Screen base whose database reads run in thread workers (use read_in_thread, never read in a handler)."""

    def _read_counter(self) -> ReadCounter | None:
        counter = getattr(self.app, "reads", None)
        return counter if isinstance(counter, ReadCounter) else None

    def read_in_thread(self, group: str, fetch: Callable[[], T], show: Callable[[T], None], *,
                       name: str = "") -> Worker[None]:
        """Run fetch() in a thread worker of `group`; show(result) on the UI thread unless a newer read of the
        group started meanwhile. name titles a failure ("Loading records failed")."""
        tokens: dict[str, int] = self.__dict__.setdefault("_read_tokens", {})
        token = tokens[group] = tokens.get(group, 0) + 1
        counter, key = self._read_counter(), (id(self), group)
        if counter is not None:
            counter.begin(key)

        def job() -> None:
            try:
                data = fetch()
            except BaseException:
                # The worker's failure reaches the user through the app's handler; uncount the read first.
                if not self.post_message(ReadDone(group, token, show, None, failed=True)) and counter is not None:
                    counter.end(key)
                raise
            if get_current_worker().is_cancelled:
                return  # superseded: a newer read of the group is counted instead
            if not self.post_message(ReadDone(group, token, show, data)) and counter is not None:
                counter.end(key)  # the screen is gone

        return self.run_worker(job, thread=True, exclusive=True, group=f"read:{group}",
                               name=name or f"Loading {group}", exit_on_error=False)

    def drop_read(self, group: str) -> None:
        """Forget the read of group in flight: its result, should it still arrive, is not shown."""
        tokens: dict[str, int] = self.__dict__.setdefault("_read_tokens", {})
        tokens[group] = tokens.get(group, 0) + 1
        self.workers.cancel_group(self, f"read:{group}")
        counter = self._read_counter()
        if counter is not None:
            counter.end((id(self), group))

    @property
    def read_started(self) -> bool:
        """Whether this screen has started any read yet (a mode's first load comes with its first resume)."""
        return bool(self.__dict__.get("_read_tokens"))

    def reading(self) -> bool:
        """Whether a read of this screen is in flight."""
        counter = self._read_counter()
        return counter is not None and counter.busy(id(self))

    def read_is_current(self, group: str, token: int) -> bool:
        """Whether token is the newest read of group."""
        return self.__dict__.get("_read_tokens", {}).get(group) == token

    def on_read_done(self, message: ReadDone) -> None:
        """Show a read's data, unless a newer read of its group started (then it is stale and dropped)."""
        message.stop()
        if not self.read_is_current(message.group, message.token):
            return
        counter = self._read_counter()
        try:
            if not message.failed:
                message.show(message.data)
        finally:
            if counter is not None:
                counter.end((id(self), message.group))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """This screen's workers report through the App's one handler (StateChanged does not bubble)."""
        event.stop()
        handler = getattr(self.app, "on_worker_state_changed", None)
        if handler is not None:
            handler(event)

    def on_unmount(self) -> None:
        """Reads of a closed screen are never shown: uncount them."""
        counter = self._read_counter()
        if counter is not None:
            counter.end_all(id(self))
