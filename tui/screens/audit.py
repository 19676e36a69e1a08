"""Audit mode: the newest audit events in pages, and a key that verifies the whole hash chain."""

from __future__ import annotations

import json
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from core.audit import AuditEventInfo, VerifyResult, list_events, verify_chain
from core.errors import KeyturnError
from core.operators import Enrolment
from core.services.views import count_events
from tui.widgets.format import show_text
from tui.screens.base import ModeScreen, page_bindings
from tui.widgets.table import PlainTable
from tui.writes import write_in_thread

PAGE = 100


class AuditScreen(ModeScreen):
    """Who did what, when and from where, newest first; `v` checks that no event was edited, deleted or moved."""

    MODE = "audit"
    AUTO_FOCUS = "#audit-table"  # the table has the focus from the start
    BINDINGS = [
        Binding("enter", "detail", "Detail"),
        Binding("v", "verify", "Verify chain"),
        Binding("n", "new_operator", "New operator"),
        Binding("e", "enrol_me", "Enrol my phone", show=False),
        *page_bindings(),
        Binding("r", "reload", "Newest", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        # Each page starts below the last id of the page before; the stack lets `[` go back.
        self._page_starts: list[int | None] = [None]
        self._last_id: int | None = None

    def compose_body(self) -> ComposeResult:
        yield Label("", id="audit-count", classes="section-title")
        yield Label("press v to verify the hash chain", id="audit-verify", markup=False)
        table: DataTable = PlainTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        for key in ("id", "time (UTC)", "actor", "action", "object", "source", "detail"):
            table.add_column(key, key=key)
        yield table

    def action_enrol_me(self) -> None:
        """Enrol the acting operator's own phone (after `keyturn operator add` or a reset): QR code, first code."""
        from core.operators import start_enrolment

        ctx = self.ctx

        def refused(exc: Exception) -> None:
            if isinstance(exc, (KeyturnError, LookupError)):  # anything else the App shows
                self.notify(str(exc), title="Enrolment", severity="warning", markup=False)

        # A new TOTP secret is stored (a write): in a thread worker, the QR code once it has committed.
        write_in_thread(self, "Enrolment", lambda: start_enrolment(ctx), self._enrol, failed=refused,
                        shows=(KeyturnError, LookupError))

    def _enrol(self, enrolment: Enrolment) -> None:
        from tui.modals.enrol import EnrolModal

        self.app.push_screen(EnrolModal(self.ctx, enrolment), lambda ok: self.reload())

    def action_new_operator(self) -> None:
        """Add an operator: name and email. The QR code is shown only to the person themselves (or while no
        operator is enrolled yet, to whoever sets keyturn up); anyone else enrols at their own terminal."""
        from core.operators import ENROL_HINT, add_operator, may_enrol, require_admin, start_enrolment
        from tui.modals.otp import OtpModal
        from tui.modals.prompt import PromptModal

        if not self.kt.permit("edit"):
            return

        added: list[tuple[str, bool]] = []  # (name, whether the acting person may see its enrolment)
        ctx, mfa = self.ctx, self.kt.mfa

        def add(name: str, email: str) -> None:
            # In the prompt's thread worker; it stays open with core's refusal until the name and email pass.
            require_admin(ctx, mfa)  # type: ignore[arg-type]
            added.append((add_operator(ctx, name, email).name, may_enrol(ctx, name)))

        def got_email(email: str | None) -> None:
            if not email or not added:
                return
            self.reload()
            name, may = added[-1]
            if not may:
                self.notify(f"{name} enrols their phone at their own terminal: {ENROL_HINT} "
                            "(or Audit, e, in the app)", title=f"Operator {name} added", timeout=15, markup=False)
                return
            write_in_thread(self, f"Enrolment of {name}", lambda: start_enrolment(ctx, name), self._enrol, shows=())

        def got_name(name: str | None) -> None:
            if name:
                self.app.push_screen(PromptModal(f"Email of {name}", placeholder="name@example.org",
                                                 save=lambda email: add(name, email)), got_email)

        def ask_name(unlocked: bool | None = True) -> None:
            if unlocked:
                self.app.push_screen(PromptModal("New operator's login name", placeholder="alice"), got_name)

        # Once operators exist, managing them needs the acting operator's own code (a name alone is a claim).
        if self.kt.enforcing:
            self.app.push_screen(OtpModal(self.ctx, self.kt.mfa), ask_name)  # type: ignore[arg-type]
        else:
            ask_name()

    def reload(self, then: Callable[[], None] | None = None) -> None:
        """Load the current page (in a thread worker; the table fills when it arrives, then `then` runs)."""
        ctx, before = self.ctx, self._page_starts[-1]

        def page() -> tuple[list[AuditEventInfo], int]:
            return list_events(ctx, limit=PAGE, before_id=before), count_events(ctx)

        self.read_in_thread("audit", page, lambda data: self._show_page(data, then), name="Loading audit events")

    def _show_page(self, data: tuple[list[AuditEventInfo], int], then: Callable[[], None] | None) -> None:
        events, total = data
        table = self.query_one("#audit-table", PlainTable)
        cells = []
        for e in events:
            detail = json.dumps(e.detail, sort_keys=True, ensure_ascii=False) if e.detail else ""
            # Text, not str: DataTable reads a str as markup, and names come from users.
            cells.append((str(e.id), (str(e.id), e.ts.strftime("%Y-%m-%d %H:%M:%S"), Text(e.actor), Text(e.action),
                                      Text(f"{e.object_type}:{e.object_id}" if e.object_type else e.object_id),
                                      Text(e.source), Text(detail[:80] + ("\u2026" if len(detail) > 80 else "")))))
        if table.show_rows(cells):
            table.move_cursor(row=0)  # a new page starts at its top, as clear() did
        self._events = {str(e.id): e for e in events}
        self._last_id = events[-1].id if events else None
        page = len(self._page_starts)
        span = f"{events[-1].id}-{events[0].id}" if events else "none"
        show_text(self.query_one("#audit-count", Label), f"Audit events {span} of {total}, page {page}  ([ ] page, v verify)")
        if then is not None:
            then()

    def action_detail(self) -> None:
        """Show the highlighted event whole (the table cuts its detail at the column's width)."""
        from tui.modals.detail import DetailModal

        table = self.query_one("#audit-table", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        e = getattr(self, "_events", {}).get(key)
        if e is None:
            return
        detail = json.dumps(e.detail, sort_keys=True, ensure_ascii=False, indent=2) if e.detail else "(no detail)"
        head = (f"time    {e.ts.strftime('%Y-%m-%d %H:%M:%S')} UTC\nactor   {e.actor}\naction  {e.action}\n"
                f"object  {e.object_type + ':' if e.object_type else ''}{e.object_id}\nsource  {e.source}\n\n")
        self.app.push_screen(DetailModal(f"Audit event {e.id}", head + detail))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on an event opens its detail."""
        event.stop()
        self.action_detail()

    def action_reload(self) -> None:
        """Back to the newest events."""
        self._page_starts = [None]
        self.reload()

    def action_page(self, step: int) -> None:
        """Older (1) or newer (-1) page."""
        if step > 0:
            if self._last_id is None or self._last_id <= 1:
                self.notify("no older events", severity="information")
                return
            self._page_starts.append(self._last_id)
        elif len(self._page_starts) > 1:
            self._page_starts.pop()
        else:
            return
        self.reload()

    def action_verify(self) -> None:
        """Check every event's hash and link (in a thread worker); jump to the first broken one."""
        ctx = self.ctx
        show_text(self.query_one("#audit-verify", Label), "verifying the hash chain…")
        self.read_in_thread("verify", lambda: verify_chain(ctx), self._show_verified, name="Verifying the audit chain")

    def _show_verified(self, result: VerifyResult) -> None:
        label = self.query_one("#audit-verify", Label)
        if result.ok:
            label.update(f"chain ok: {result.checked} events, head {result.head_hash[:16] or '(empty)'}")
            label.set_classes("")
            self.notify(f"audit chain ok ({result.checked} events)", title="Audit")
            return
        label.update(f"chain BROKEN at event {result.first_bad_id}: {result.reason}")
        label.set_classes("field-error")
        self.notify(f"broken at event {result.first_bad_id}: {result.reason}", title="Audit", severity="error",
                    markup=False)
        # Show the page holding the broken event, with the cursor on it.
        bad = result.first_bad_id or 0
        self._page_starts = [None, bad + 1] if bad else [None]

        def to_top() -> None:
            table = self.query_one("#audit-table", DataTable)
            if table.row_count:
                table.move_cursor(row=0)

        self.reload(then=to_top)
