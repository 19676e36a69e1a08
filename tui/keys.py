"""Keys handled one at a time, so each goes to the widget focused when it is handled, however they arrive.

Textual's App forwards a key to the focused widget's own message queue and goes straight on to the next key.
A key the widget does not use (Tab, Enter in a search field) bubbles back up to the App, and only there do
its bindings run, so the focus moves *after* the App has already forwarded the rest of the burst to the old
widget. Over a laggy SSH link keys arrive in bursts: "fast1<Tab>deploy" filled the Name field with
"fast1deploy". OrderedKeys holds each key until every message the previous one caused has been handled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from textual import events
from textual.app import App

# A key's effects are normally settled in well under a millisecond; a widget that keeps posting (an
# animation) must not stall typing, so after this long the next key goes anyway.
SETTLE_LIMIT = 0.5
QUIET_TURNS = 3


class OrderedKeys(App):
    """App mixin: fresh key events wait in a backlog until the previous key's messages are all handled."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._key_backlog: deque[events.Key] = deque()
        self._key_task: asyncio.Task[None] | None = None

    async def on_event(self, event: events.Event) -> None:
        """Queue keys from the terminal; everything else as usual."""
        if isinstance(event, events.Key) and not event.is_forwarded:
            self._key_backlog.append(event)
            if self._key_task is None or self._key_task.done():
                self._key_task = asyncio.create_task(self._handle_keys())
            return
        await super().on_event(event)

    async def _handle_keys(self) -> None:
        while self._key_backlog:
            event = self._key_backlog[0]
            try:
                await super().on_event(event)
                await self._settled()
            finally:
                self._key_backlog.popleft()

    def _busy(self) -> bool:
        return any(p._message_queue.qsize() or p._next_callbacks for p in (self, *self._registry))

    async def _settled(self) -> None:
        """Return once no message queue has held anything for a few turns of the loop (or after SETTLE_LIMIT)."""
        # Textual's queue does not count a message while it is handled, so a queue is only known to be done
        # once it has stayed empty while every other task had its turn.
        deadline = time.monotonic() + SETTLE_LIMIT
        quiet = 0
        while quiet < QUIET_TURNS and time.monotonic() < deadline:
            await asyncio.sleep(0)
            quiet = 0 if self._busy() else quiet + 1
