"""The keyturn Textual app: modes for each main area, the registry of running rotations, and reveal.

Rotation work runs in App-level thread workers (they must outlive any screen or modal); engine events come
back as messages and are folded into a RunState per run, which the History mode's run panel renders.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from datetime import datetime
from functools import partial

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.signal import Signal
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from core.config import Settings
from core.context import Context, open_context
from core.errors import KeyturnError, UnsafeSetupError
from core.events import Event
from core.types import utcnow
from core.types import ExecutionInfo
from tui.keys import OrderedKeys
from tui.modals.confirm import ConfirmModal
from tui.reads import ReadCounter, read_off_ui
from tui.writes import WriteCounter, write_in_thread
from tui.screens.audit import AuditScreen
from tui.screens.base import ModeScreen
from tui.screens.history import HistoryScreen
from tui.screens.inventory import InventoryScreen
from tui.screens.overview import OverviewScreen
from tui.screens.records import RecordsScreen
from tui.screens.tasks import TasksScreen
from tui.widgets.format import plural
from tui.widgets.run_panel import RunState, RunUpdated

if TYPE_CHECKING:
    from core.operators import Standing

Clock = Callable[[], datetime]
# Full collections at most every 100 middle ones instead of every 10 (Python's default is 700, 10, 10).
GC_THRESHOLDS = (700, 10, 100)
# The other modes' screens are composed while the app is idle, one per step, starting this long after start
# (the first screen's own read and paint come first) and this long apart (a key pressed meanwhile waits for at
# most one screen's composition, 15-30 ms, instead of a first visit's 45-55 ms: benchmarks/tui_scale.py).
PREBUILD_AFTER = 0.5
PREBUILD_GAP = 0.05
PREBUILD_DRAW = 0.010

# mode -> (key, title); the order is the order of the mode bar and of the footer.
MODE_KEYS: dict[str, tuple[str, str]] = {
    "overview": ("o", "Overview"),
    "tasks": ("t", "Tasks"),
    "history": ("h", "History"),
    "records": ("s", "Records"),
    "inventory": ("i", "Inventory"),
    "audit": ("u", "Audit"),
}
MODE_SCREENS: dict[str, Callable[[], Screen]] = {
    "overview": OverviewScreen,
    "tasks": TasksScreen,
    "history": HistoryScreen,
    "records": RecordsScreen,
    "inventory": InventoryScreen,
    "audit": AuditScreen,
}


def error_text(error: BaseException | None) -> str:
    """A failure in the words `keyturn` prints after "keyturn: error: " (a bug names its type)."""
    if isinstance(error, KeyturnError):
        return str(error)
    return f"{type(error).__name__}: {error}"


# The main actions of each mode, offered by the command palette from any mode: (title, mode, screen action).
APP_COMMANDS: list[tuple[str, str, str]] = [
    ("New task", "tasks", "new"),
    ("Run task now", "tasks", "run"),
    ("Retry all failed", "records", "retry_all"),
    ("Reconcile", "records", "reconcile"),
    ("Trust host key", "inventory", "trust"),
    ("Import file", "inventory", "import_file"),
    ("New asset", "inventory", "new"),
    ("New operator", "audit", "new_operator"),
    ("Enrol my phone (TOTP)", "audit", "enrol_me"),
]


class EngineEvent(Message):
    """An engine event of one run, posted from the worker thread (post_message is thread-safe)."""

    def __init__(self, run_key: int, event: Event) -> None:
        super().__init__()
        self.run_key = run_key
        self.event = event


class KeyturnApp(OrderedKeys, App[int]):
    """Rotate secrets on many hosts: overview, tasks, history, records, inventory."""

    TITLE = "keyturn"
    CSS_PATH = "app.tcss"
    MODES = MODE_SCREENS
    MODE_KEYS = MODE_KEYS
    DEFAULT_MODE = "overview"
    # Mode keys are on the mode bar, so the footer keeps its 80 columns for the screen's own keys.
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", title, tooltip=f"Show {title}", show=False)
          for mode, (key, title) in MODE_KEYS.items()),
        Binding("question_mark", "help", "Keys"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, ctx: Context, *, clock: Clock | None = None, mfa_session: object | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self._clock = clock or utcnow
        self._mfa = mfa_session
        # Core's step-ups (task create/edit, mail) see the app's unlock window through the context.
        ctx.mfa = self.mfa
        self.runs: dict[int, RunState] = {}
        self._restarts: dict[int, Callable[[], object]] = {}  # run key -> start it again after a step-up
        self._next_run_key = 1
        self.run_signal: Signal[RunUpdated] = Signal(self, "run")
        self.reads = ReadCounter()  # screen reads in flight (tests wait on it instead of sleeping)
        self.writes = WriteCounter(self)  # writes in flight (tests wait on it instead of sleeping)
        self.prebuilt = False  # every mode's screen is composed (see _prebuild_next)
        self.standing: Standing | None = None  # what the acting person may do, as last read (refresh_standing)
        self._standing_reading = self._standing_again = False

    def notify(self, message: str, *, markup: bool = False, **kwargs: object) -> None:  # type: ignore[override]
        """Show a toast. Messages carry host errors and user names, so they are never read as markup."""
        super().notify(message, markup=False, **kwargs)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        """Settle records a killed run left open before anything else touches them (DESIGN.md step 4)."""
        # Everything imported and built so far lives as long as the app: keep it out of the cyclic collector's
        # full passes, which otherwise stop the UI thread for 0.1-0.5 s at a time once worker threads churn
        # through query rows (measured in benchmarks/tui_scale.py).
        self._gc_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.set_timer(PREBUILD_AFTER, self._prebuild_next)
        self.refresh_standing()
        if self.ctx.settings.reconcile_on_start:
            self._reconcile_if_unsettled()

    def _reconcile_if_unsettled(self) -> None:
        """Start the automatic reconcile when records are left open (the check reads in a thread worker)."""
        from core.services.views import anything_unsettled

        ctx = self.ctx

        def started(unsettled: bool) -> None:
            if unsettled:
                # Only probes logins and settles records, never changes a host: not gated on who is acting.
                self.start_reconcile(automatic=True)

        read_off_ui(self, "Checking for open records", lambda: anything_unsettled(ctx), started)

    def _prebuild_next(self) -> None:
        """Take one step of getting a mode's screen ready ahead of its first visit, then come back for the next.

        A first visit used to compose and mount the mode's whole screen, lay it out, load its page and draw all of
        it between the key and the next paint (45-55 ms of UI-thread CPU in one go, benchmarks/tui_scale.py).
        While the app is idle each mode's screen is, one step at a time (PREBUILD_GAP apart, so a key pressed
        meanwhile waits for one step at most): composed as Textual's own first switch_mode does it (registered
        on the mode's stack, not shown), laid out at the app's size, loaded (its reads, as a visit starts them)
        and drawn once off screen, which fills the widgets' line caches. The visit then resumes it: its reload
        finds the same rows (PlainTable.show_rows keeps them) and the paint reuses what was drawn. A screen
        the person visits first is left to its visit. Waits while reads or writes are in flight or a modal is
        open. Stops once the app is shutting down: Textual closes the screens on every mode's stack then, and a
        screen registered meanwhile would change the stacks under it."""
        if self._exit or not self.is_running:
            return
        if self.reads.pending or self.writes.pending or len(self.screen_stack) > 1:
            self.set_timer(PREBUILD_AFTER, self._prebuild_next)
            return
        stages: dict[str, int] = self.__dict__.setdefault("_prebuild_stages", {})
        for mode in self.MODES:
            if mode == self.current_mode or stages.get(mode, 0) >= 4:
                continue
            stack = self._screen_stacks.get(mode)
            if not stack:
                screen, _mounted = self._get_screen(self.MODES[mode]())  # type: ignore[operator]
                self._screen_stacks[mode] = [screen]
                self._load_screen_css(screen)
                stages[mode] = 1
            else:
                screen = stack[0]
                stage = stages.get(mode, 0)
                if stage == 0 or not isinstance(screen, ModeScreen):
                    stages[mode] = 4  # built by a visit: nothing to do ahead
                    continue
                if stage == 1:
                    screen._refresh_layout(self.size)
                elif stage == 2:
                    if not screen.read_started:
                        screen.reload()
                elif stage == 3 and not self._draw_ahead(screen):
                    stage -= 1  # more widgets to draw in the next step
                stages[mode] = stage + 1
            self.set_timer(PREBUILD_GAP, self._prebuild_next)
            return
        self.prebuilt = True

    def on_resize(self, event: events.Resize) -> None:
        """The terminal changed size: the other modes' screens were laid out and drawn at the old one, so each next
        visit would lay out and draw the whole screen again in the gap after the key (45-55 ms of UI-thread CPU,
        as before the building ahead). Lay them out and draw them again while idle, with the same steps; their
        rows are not read again. Textual itself resizes the screen on display."""
        stages: dict[str, int] | None = self.__dict__.get("_prebuild_stages")
        if not stages:
            return  # the building has not started: it lays out at the size of its own time
        again = False
        for mode, stack in self._screen_stacks.items():
            if mode == self.current_mode or not stack or not isinstance(stack[0], ModeScreen):
                continue
            if stack[0].outer_size == event.size:
                continue
            stages[mode] = 1  # composed: lay out next
            stack[0].__dict__.pop("_draw_ahead", None)
            again = True
        if again and self.prebuilt:
            self.prebuilt = False
            self.set_timer(PREBUILD_AFTER, self._prebuild_next)

    def _draw_ahead(self, screen: Screen) -> bool:
        """Draw the next few widgets of a laid-out screen off screen (about PREBUILD_DRAW seconds of UI-thread
        CPU), filling their line caches; True once every widget has been drawn."""
        pending: list[Widget] | None = screen.__dict__.get("_draw_ahead")
        if pending is None:
            pending = screen.__dict__["_draw_ahead"] = [w for w in screen._compositor.widgets if w.size.area]
        start = time.thread_time()
        while pending and time.thread_time() - start < PREBUILD_DRAW:
            widget = pending.pop()
            if not widget.is_attached:
                continue  # removed since the layout (a run's panel, a refilled tree)
            try:
                widget.render_lines(widget.size.region)
            except Exception:  # noqa: BLE001 - only a warm-up of caches: the visit draws it anyway
                pass
        return not pending

    def on_unmount(self) -> None:
        """Give the collector back what on_mount kept from it (tests run many apps in one process)."""
        gc.unfreeze()
        gc.set_threshold(*getattr(self, "_gc_thresholds", gc.get_threshold()))

    def now(self) -> datetime:
        """The app's clock: dates on screen are relative to it (frozen in tests and screenshots)."""
        return self._clock()

    # -- command palette and help -----------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """keyturn's own actions first (this screen's, then the main ones of other modes), modes, then Textual's."""
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if active.node is self or not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            yield SystemCommand(binding.description, f"{binding.description} (key {self.get_key_display(binding)})",
                                partial(self._run_screen_action, active.node, binding.action))
        for title, mode, action in APP_COMMANDS:
            if title not in seen and mode != self.current_mode:
                seen.add(title)
                key = MODE_KEYS[mode][0]
                yield SystemCommand(title, f"{title} (in {MODE_KEYS[mode][1]}, key {key})",
                                    partial(self._run_mode_action, mode, action))
        for mode, (key, title) in MODE_KEYS.items():
            yield SystemCommand(f"Show {title}", f"Switch to the {title} mode (key {key})",
                                partial(self.switch_mode, mode))
        yield from super().get_system_commands(screen)

    def _run_screen_action(self, node: object, action: str) -> None:
        self.call_later(self.run_action, action, node)

    def _run_mode_action(self, mode: str, action: str) -> None:
        async def run() -> None:
            await self.switch_mode(mode)
            await self.run_action(action, self.screen)

        self.call_later(run)

    def action_help(self) -> None:
        """List every key of the current screen (the footer shows the frequent ones)."""
        from tui.modals.help import HelpModal

        screen = self.screen
        if screen.id == "_help":
            return
        rows: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or (binding.description, key) in seen:
                continue
            seen.add((binding.description, key))
            where = "everywhere" if active.node is self else "this screen" if active.node is screen else (
                active.node.id or type(active.node).__name__)
            rows.append((self.get_key_display(binding), binding.description, where))
        own = {d for b in type(screen).__dict__.get("BINDINGS", []) if isinstance(b, Binding)
               for d in [b.description]}
        order = {"this screen": 1, "everywhere": 2}
        # Stable sort: the screen's own keys first, then the app's, then generic and widget keys.
        rows.sort(key=lambda r: 0 if r[2] == "this screen" and r[1] in own else order.get(r[2], 3) + (r[1] not in own))
        rows.append(("ctrl+p", "command palette: every action by name", "everywhere"))
        title = f"Keys of {MODE_KEYS[self.current_mode][1]}" if screen is self.screen_stack[0] else "Keys"
        self.push_screen(HelpModal(title, rows))

    # -- runs --------------------------------------------------------------------------------------
    def active_runs(self) -> list[RunState]:
        """Runs still going."""
        return [r for r in self.runs.values() if not r.finished]

    def _new_run(self, title: str, kind: str) -> RunState:
        run = RunState(key=self._next_run_key, title=title, kind=kind, started_at=self.now())
        self._next_run_key += 1
        self.runs[run.key] = run
        self._publish(run, run.note(f"{title}: starting", style="dim"))
        return run

    def _publish(self, run: RunState, line: object) -> None:
        self.run_signal.publish(RunUpdated(run, line))  # type: ignore[arg-type]

    def permit(self, action: str) -> bool:
        """Whether the acting person may do action (run, edit); says why not in a notification.

        Answered from the person's standing as last read (refresh_standing, in a thread worker) and read again
        after every answer; a key pressed before the first read arrived (the app's first milliseconds) has it read
        here. Only an early "no": each use case checks again in core, and a refusal there says the same."""
        from core.operators import standing as read_standing

        standing = self.standing
        if standing is None:
            standing = self.standing = read_standing(self.ctx)
        self.refresh_standing()
        why = standing.refusal(action)
        if why:
            self.notify(why, title="Not allowed", severity="error", timeout=10)
            return False
        return True

    @property
    def enforcing(self) -> bool:
        """Whether some operator has confirmed enrolment, as last read (True until known: the careful answer)."""
        return self.standing is None or self.standing.enforcing

    def refresh_standing(self) -> None:
        """Read the acting person's standing (core.operators.standing) in a thread worker; one read at a time, and
        one more after it when asked meanwhile (a write may have committed after it started). Tests wait on
        app.reads."""
        from core.operators import standing

        if self._standing_reading:
            self._standing_again = True
            return
        self._standing_reading, self._standing_again = True, False
        ctx = self.ctx
        read_off_ui(self, "Reading what you may do", lambda: standing(ctx), partial(setattr, self, "standing"),
                    finished=self._standing_read)

    def _standing_read(self) -> None:
        self._standing_reading = False
        if self._standing_again:
            self.refresh_standing()

    def step_up(self, exc: Exception, retry: Callable[[], object]) -> None:
        """Core asked for a fresh TOTP code (core.stepup.StepUpRequired; it wrote nothing): ask for one in the OTP
        modal, then do the same again. Cancelling the modal leaves everything as it was."""
        from tui.modals.otp import OtpModal

        self.notify(str(exc), title="TOTP code needed", timeout=8)
        self.push_screen(OtpModal(self.ctx, self.mfa), lambda ok: retry() if ok else None)  # type: ignore[arg-type]

    def start_run(self, task_name: str, *, on_workers: bool = False) -> RunState | None:
        """Run a task now in a worker, or queue it for `keyturn worker` processes and follow it; the History mode
        shows its live log either way."""
        if not self.permit("run"):
            return None
        if any(r.title == task_name and not r.finished for r in self.runs.values()):
            self.notify(f"{task_name} is already running", severity="warning")
            return None
        run = self._new_run(task_name, "run")
        job = self._workers_run if on_workers else self._engine_run
        run.worker = self._rotation(run, partial(job, task_name))
        self._restarts[run.key] = partial(self.start_run, task_name, on_workers=on_workers)
        where = " on keyturn workers" if on_workers else ""
        self.notify(f"Started {task_name}{where}; its log is in History (h)")
        return run

    def start_retry(self, record_ids: list[int], title: str) -> RunState | None:
        """Retry failed/unverified records in a worker."""
        if not self.permit("run"):
            return None
        run = self._new_run(title, "retry")
        run.worker = self._rotation(run, partial(self._engine_retry, record_ids))
        self._restarts[run.key] = partial(self.start_retry, record_ids, title)
        self.notify(f"Started {title}; its log is in History (h)")
        return run

    def start_reconcile(self, *, automatic: bool = False) -> RunState | None:
        """Probe and settle pending/unverified records in a worker."""
        if not automatic and not self.permit("run"):
            return None
        run = self._new_run("reconcile", "reconcile")
        run.worker = self._rotation(run, self._engine_reconcile)
        self.notify("Started reconcile; its log is in History (h)")
        return run

    def _engine_run(self, task_name: str, run: RunState) -> object:
        from core.engine import run_task

        return self._mailed(run_task(self.ctx, task_name, trigger="manual", cancel=run.cancel, on_event=self._sink(run)))

    def _workers_run(self, task_name: str, run: RunState) -> object:
        """Queue the run for keyturn workers and follow it until it ends; the workers mail its report."""
        from core.workers import follow, queue_run

        sink = self._sink(run)
        execution_id = queue_run(self.ctx, task_name, trigger="manual", on_event=sink)
        return follow(self.ctx, execution_id, on_event=sink, cancel=run.cancel)

    def _engine_retry(self, record_ids: list[int], run: RunState) -> object:
        from core.engine import retry_records

        return self._mailed(retry_records(self.ctx, record_ids, cancel=run.cancel, on_event=self._sink(run)))

    def _mailed(self, info: ExecutionInfo) -> ExecutionInfo:
        """Mail the execution's report to its recipients; a delivery error is stored on the execution only."""
        from core.notify import send_execution_report

        error = send_execution_report(self.ctx, info.id)
        if error:
            self.call_from_thread(self.notify, f"report not mailed: {error}", severity="warning", timeout=10)
        return info

    def _engine_reconcile(self, run: RunState) -> object:
        from core.reconcile import reconcile

        return reconcile(self.ctx, on_event=self._sink(run), cancel=run.cancel)

    def _sink(self, run: RunState) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            self.post_message(EngineEvent(run.key, event))
        return on_event

    @work(thread=True, group="rotation", exit_on_error=False)
    def _rotation(self, run: RunState, job: Callable[[RunState], object]) -> object:
        return job(run)

    def record_event(self, run: RunState, event: Event) -> None:
        """Fold one engine event into its run and tell the run panels (also used to replay fixed events)."""
        self._publish(run, run.apply(event))

    def on_engine_event(self, message: EngineEvent) -> None:
        """An event from a worker thread, now on the app's thread."""
        run = self.runs.get(message.run_key)
        if run is not None:
            self.record_event(run, message.event)

    def cancel_run(self, key: int) -> None:
        """Ask a run to stop: the engine finishes accounts in flight, verifies them, and touches no more."""
        run = self.runs.get(key)
        if run is None or run.finished:
            return
        run.cancel.set()
        self._publish(run, run.note("cancel requested; finishing the accounts in flight", style="magenta"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker outcomes reach the user: errors as notifications, never a traceback."""
        from core.stepup import StepUpRequired

        worker = event.worker
        run = None
        if worker.group == "rotation":
            run = next((r for r in self.runs.values() if r.worker is worker), None)
        restart = self._restarts.pop(run.key, None) if run is not None and worker.is_finished else None
        if event.state == WorkerState.ERROR and restart is not None and isinstance(worker.error, StepUpRequired):
            # Refused before anything was written (core.stepup): ask for a code, then start it again.
            run.status = "cancelled"  # type: ignore[union-attr]
            self._publish(run, run.note(f"not started: {worker.error}", style="yellow"))  # type: ignore[arg-type,union-attr]
            self.step_up(worker.error, restart)
            return
        if event.state == WorkerState.ERROR:
            message = error_text(worker.error)
            if run is not None:
                run.status = "error"
                self._publish(run, run.note(f"error: {message}", style="bold red"))
            title = f"{run.title} failed" if run else f"{worker.name} failed" if worker.name[:1].isupper() else "Error"
            self.notify(message, title=title, severity="error", timeout=10)
        elif event.state == WorkerState.SUCCESS and run is not None and not run.finished:
            # The engine sends ExecutionFinished; this covers jobs that end without it.
            result = worker.result
            run.status = getattr(result, "status", None) or ("cancelled" if run.cancel.is_set() else "success")
            summary = result.text() if hasattr(result, "text") else f"{run.title}: {run.status}"
            self._publish(run, run.note(summary, style="bold"))
        elif event.state == WorkerState.CANCELLED and run is not None and not run.finished:
            run.status = "cancelled"
            self._publish(run, None)
        if run is not None and run.finished and event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            self.notify(f"{run.title}: {run.status}", severity="information" if run.status == "success" else "warning")

    async def action_quit(self) -> None:
        """Quit; with runs going, ask first and cancel them cleanly."""
        active = self.active_runs()
        if not active:
            self.exit(0)
            return

        def done(yes: bool | None) -> None:
            if yes:
                for run in active:
                    run.cancel.set()
                self.exit(0)

        self.push_screen(ConfirmModal(
            f"{plural(len(active), 'run')} in progress. Cancel {'it' if len(active) == 1 else 'them'} and quit?",
            "Accounts in flight are finished and verified; the rest stay untouched.", yes="Cancel and quit",
            danger=True), done)

    # -- reveal ------------------------------------------------------------------------------------
    @property
    def mfa(self) -> object:
        """The one MFA session of this app (unlocks last Settings.mfa_unlock_seconds)."""
        if self._mfa is None:
            from core.mfa import MfaSession

            self._mfa = MfaSession(self.ctx.settings)
        return self._mfa

    def reveal_record(self, record_id: int, which: str = "both") -> None:
        """Show a change record's old and/or new secret after a TOTP check."""
        from core.errors import NothingToReveal
        from core.reveal import reveal_record

        whiches = ("old", "new") if which == "both" else (which,)

        def fetch(reason: str) -> list:
            items: list = []
            errors = []
            for w in whiches:
                try:
                    items.extend(reveal_record(self.ctx, self.mfa, record_id, w, reason=reason))  # type: ignore[arg-type]
                except NothingToReveal as exc:
                    errors.append(str(exc))
            if not items:
                raise NothingToReveal("; ".join(errors) or f"change record {record_id} holds no secret")
            return items

        self._reveal(fetch, f"record {record_id}")

    def reveal_account(self, account_id: int) -> None:
        """Show an account's current secret after a TOTP check."""
        from core.reveal import reveal_account

        self._reveal(lambda reason: reveal_account(self.ctx, self.mfa, account_id, reason=reason),  # type: ignore[arg-type]
                     f"account {account_id}")

    def _reveal(self, fetch: Callable[[str], list], what: str) -> None:
        """Ask why (a ticket id or text, kept with the audit event, as `keyturn reveal --reason`), then a code
        unless the unlock window holds, then show the secrets."""
        if not self.enforcing:
            # Reveal needs a code from an enrolled phone; before the first one exists no code could ever work.
            self.notify("No operator is enrolled yet, so no code can unlock a secret. Enrol one in Audit "
                        "(u, then n) or with `keyturn operator add NAME --email ADDR` and `keyturn operator enrol`, "
                        "then reveal again.",
                        title="Reveal needs an operator", severity="warning", timeout=15)
            return
        from core.reveal import check_reason
        from tui.modals.otp import OtpModal
        from tui.modals.prompt import PromptModal
        from tui.modals.reveal import RevealModal

        def refused(exc: Exception) -> None:
            if isinstance(exc, KeyturnError):  # anything else the App's worker handler shows
                self.notify(str(exc), title="Reveal refused", severity="error", markup=False)

        def show(reason: str) -> None:
            # Decrypting writes the reveal's audit event first: in a thread worker, the secrets once it committed.
            write_in_thread(self, f"Reveal of {what}", lambda: fetch(reason),
                            lambda items: self.push_screen(RevealModal(f"Secrets of {what}", items)), failed=refused,
                            shows=(KeyturnError,))

        def got_reason(reason: str | None) -> None:
            if not reason:
                return
            if self.mfa.unlocked(self.ctx.operator):  # type: ignore[attr-defined]
                show(reason)
                return
            self.push_screen(OtpModal(self.ctx, self.mfa), lambda ok: show(reason) if ok else None)

        def why(text: str) -> str | None:
            try:
                check_reason(text)
            except KeyturnError as exc:
                return str(exc)
            return None

        self.push_screen(PromptModal(f"Reason to reveal {what}", placeholder="ticket id or text (kept in the audit trail)",
                                     check=why), got_reason)


def run_app(settings: Settings, operator: str | None = None, source: str = "") -> int:
    """Open keyturn and run the app; an unsafe data directory or key file stops before any screen."""
    try:
        ctx = open_context(settings, operator=operator, source=source)
    except UnsafeSetupError as exc:
        print(f"keyturn: error: {exc}", file=sys.stderr)
        return 2
    try:
        KeyturnApp(ctx).run()
    finally:
        ctx.close()
    return 0
