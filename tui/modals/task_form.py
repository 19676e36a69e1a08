"""The task form: every field of a change-secret task, each checked by core's own rules with its own error line.

TaskFormModal(ctx, spec_or_None) saves through core.tasks (create_task / edit_task) only when every field
passes, and dismisses with the saved TaskSpec (None when cancelled). Fields that do not apply are hidden.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.validation import Validator
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, SelectionList, TextArea

from core import tasks
from core.context import Context
from core.errors import InputError, KeyturnError
from core.schedule import next_runs, validate_schedule
from core.secretgen import KEY_ALGORITHMS, check_specific_password, validate_rules
from core.targets import visible_preview
from core.services.inventory import list_nodes
from core.services.views import asset_choices, operator_names
from core.types import HostParams, NodeInfo, PasswordRules, TaskSpec
from tui.modals.form import FormModal
from tui.reads import ThreadedReads
from tui.widgets.compact import make_compact
from tui.widgets.marked import MarkedCheckbox, MarkedSelectionList
from tui.widgets.validators import CoreCheck

ASSET_CHOICES = 200
PREVIEW_DELAY = 0.5
SEARCH_DELAY = 0.25

# A valid task; one field at a time is replaced by what the user typed and the whole spec goes through
# core.tasks.validate_task, so the form applies exactly core's rules without copying them.
_BASE = TaskSpec(name="task", usernames=["root"], assets=["asset"])

# The field a core InputError names (InputError.field) -> the form's error line that shows it.
FIELD_ERRORS: dict[str, str] = {
    "name": "name", "description": "description", "accounts": "accounts", "targets": "assets", "assets": "assets",
    "nodes": "nodes", "strategy": "strategy", "type": "type", "key strategy": "key_strategy",
    "key algorithm": "key_algorithm", "password": "password", "private key": "private_key",
    "key passphrase": "passphrase", "length": "rules", "exclude": "rules", "rules": "rules",
    "chpasswd path": "host", "verify": "host", "become password": "host", "interval": "schedule",
    "cron": "schedule", "schedule": "schedule", "start": "schedule", "recipients": "recipients",
}


def error_field(exc: InputError) -> str:
    """The form's error line for a core InputError: the one of the field it names ('form' when none)."""
    return FIELD_ERRORS.get(exc.field or "", "form")


def split_names(text: str) -> list[str]:
    """'root, admin' -> ['root', 'admin']."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _spec_check(**build: Callable[[str], object]) -> CoreCheck:
    ((field, parse),) = build.items()
    return CoreCheck(lambda v: tasks.validate_task(dataclasses.replace(_BASE, **{field: parse(v)})))


def _int(field: str) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            return int(v.strip())
        except ValueError:
            raise InputError(f"{field}: must be a whole number, got {v!r}", field=field) from None
    return parse


def task_name_validators() -> list[Validator]:
    """Validators of a task name (also used by the copy prompt)."""
    return [_spec_check(name=lambda v: v)]


def _check_interval(v: str) -> None:
    validate_schedule(_int("interval")(v), None)


def _check_cron(v: str) -> None:
    if not v.strip():
        raise InputError("cron: is empty", field="cron")
    validate_schedule(None, v.strip())


def _check_start(v: str) -> None:
    if v.strip():
        tasks.parse_time(v)


def _check_become(v: str) -> None:
    if v:
        check_specific_password(v, field="become password")


class TaskFormModal(ThreadedReads, FormModal[TaskSpec | None]):
    """Create or edit a task; ctrl+s saves, Esc cancels."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, ctx: Context, spec: TaskSpec | None, *, now: Callable[[], datetime]) -> None:
        super().__init__()
        self.ctx = ctx
        self.original = spec
        self.spec = spec or TaskSpec(name="", usernames=[])
        self.now = now
        self.chosen_assets: list[str] = list(self.spec.assets)
        self._preview_timer: Timer | None = None
        self._search_timer: Timer | None = None

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        s = self.spec
        rules, params = s.rules, s.params
        periodic = "interval" if s.interval_hours else "cron" if s.cron else "none"
        with Vertical(classes="dialog form", id="task-form"):
            yield Label("Edit task " + self.original.name if self.original else "New task", classes="dialog-title", markup=False)
            with VerticalScroll(id="form-body"):
                yield self.field_group("name", "Name", Input(s.name, id="name", validators=task_name_validators()))
                yield self.field_group("accounts", "Accounts (user names, comma separated)", Input(
                    ", ".join(s.usernames), id="accounts", placeholder="root, deploy",
                    validators=[_spec_check(usernames=split_names)]))
                yield self.field_group(
                    "assets", "Assets", Input(placeholder="filter assets by name or address", id="asset-filter"),
                    MarkedSelectionList(id="assets"), Label("", markup=False, id="assets-chosen", classes="field-note"))
                # Nodes and operators arrive from a thread worker (_show_setup): the form opens at once.
                yield self.field_group("nodes", "Nodes (subnodes included)", MarkedSelectionList(id="nodes"),
                                       note="loading nodes…")
                yield self.field_group("strategy", "Secret strategy", Select(
                    [("random (generated per account)", "random"), ("specific (the same for all)", "specific")],
                    value=s.secret_strategy, allow_blank=False, id="strategy"))
                yield self.field_group("type", "Secret type", Select(
                    [("password", "password"), ("SSH key", "ssh_key")], value=s.secret_type, allow_blank=False,
                    id="type"))
                yield self.field_group("password", "Password", Input(
                    s.specific_secret or "" if s.secret_type == "password" else "", password=True, id="password",
                    validators=[CoreCheck(check_specific_password)]))
                yield self.field_group("key_strategy", "SSH key strategy", Select(
                    [("replace ours (remove keys keyturn pushed, then add)", "replace-ours"),
                     ("replace all (empty authorized_keys, then add)", "replace-all"),
                     ("append", "append")], value=s.ssh_key_strategy, allow_blank=False, id="key_strategy"))
                yield self.field_group("key_algorithm", "Key algorithm", Select(
                    [(a, a) for a in KEY_ALGORITHMS], value=s.key_algorithm, allow_blank=False, id="key_algorithm"))
                yield self.field_group(
                    "private_key", "Private key (paste, or give a file path below)",
                    TextArea(s.specific_secret or "" if s.secret_type == "ssh_key" else "", id="private_key",
                             soft_wrap=False, show_line_numbers=False),
                    Input(placeholder="or a path: ~/.ssh/new_key", id="private_key_path"))
                yield self.field_group("passphrase", "Key passphrase (empty when the key is not encrypted)", Input(
                    s.specific_passphrase or "", password=True, id="passphrase"))
                yield self.field_group(
                    "rules", "Password rules",
                    Horizontal(Label("length ", classes="inline-label"),
                               Input(str(rules.length), id="length", type="integer", classes="short",
                                     validators=[CoreCheck(self._check_length)]),
                               Label(" exclude ", classes="inline-label"),
                               Input(rules.exclude, id="exclude", classes="short", placeholder="e.g. O0l1"),
                               classes="inline"),
                    Horizontal(MarkedCheckbox("lower", rules.lower, id="lower"), MarkedCheckbox("upper", rules.upper, id="upper"),
                               MarkedCheckbox("digits", rules.digits, id="digits"),
                               MarkedCheckbox("symbols", rules.symbols, id="symbols"), classes="inline"))
                yield self.field_group(
                    "host", "Host parameters",
                    Horizontal(MarkedCheckbox("use sudo", params.use_sudo, id="sudo"),
                               MarkedCheckbox("create user if missing", params.create_user, id="create_user"),
                               classes="inline"),
                    Input(s.become_password or "", password=True, id="become", validators=[CoreCheck(_check_become)],
                          placeholder="sudo (become) password, empty if NOPASSWD"),
                    Input(params.chpasswd_path, id="chpasswd", placeholder="chpasswd path", validators=[
                        _spec_check(params=lambda v: HostParams(chpasswd_path=v.strip()))]),
                    Select([("verify by logging in (ssh)", "ssh"), ("do not verify", "none")], value=params.verify,
                           allow_blank=False, id="verify"))
                yield self.field_group(
                    "schedule", "Periodic",
                    Select([("no schedule", "none"), ("every N hours", "interval"), ("cron line", "cron")],
                           value=periodic, allow_blank=False, id="periodic"),
                    Input(str(s.interval_hours or ""), id="interval", type="integer", placeholder="hours",
                          validators=[CoreCheck(_check_interval)]),
                    Input(s.cron or "", id="cron", placeholder="minute hour day month weekday, e.g. 0 3 * * 1",
                          validators=[CoreCheck(_check_cron)]),
                    Input(s.start_at.strftime("%Y-%m-%dT%H:%MZ") if s.start_at else "", id="start",
                          placeholder="start (UTC, optional): 2025-01-31T02:00Z", validators=[CoreCheck(_check_start)]),
                    Label("", markup=False, id="next-runs", classes="field-note"))
                yield self.field_group("options", "Options", Horizontal(
                    MarkedCheckbox("check connection after change", s.check_after_change, id="check"),
                    MarkedCheckbox("active", s.active, id="active"), classes="inline"))
                yield self.field_group("description", "Description", Input(s.description, id="description"))
                yield self.field_group("recipients", "Recipients (operators mailed after each run)",
                                       MarkedSelectionList(id="recipients"), note="loading operators…")
            yield Label("", markup=False, id="err-form", classes="field-error")
            yield Label("", markup=False, id="form-preview", classes="preview-line")
            yield self.buttons()

    def on_mount(self) -> None:
        """Fill the asset picker, hide fields that do not apply, and compute the first preview."""
        make_compact(self)
        self._setup_done = False
        self._apply_visibility()
        self._update_next_runs()
        self.query_one("#name", Input).focus()
        self._initial = self._snapshot()
        ctx = self.ctx
        self.read_in_thread("form-setup", lambda: (list_nodes(ctx), operator_names(ctx)), self._show_setup,
                            name="Loading nodes and operators")
        self._fill_assets()

    def _show_setup(self, data: tuple[list[NodeInfo], list[str]]) -> None:
        """Fill the node and recipient pickers (the task's own ones chosen), then compute the first preview."""
        nodes, operators = data
        untouched = self._snapshot() == self._initial
        s = self.spec
        with self.prevent(SelectionList.SelectedChanged):
            self.query_one("#nodes", SelectionList).add_options(
                [("\u00a0\u00a0" * (n.path.count("/") - 1) + n.name, n.path, n.path in s.nodes) for n in nodes])
            self.query_one("#recipients", SelectionList).add_options([(o, o, o in s.recipients) for o in operators])
        for picker in (self.query_one("#nodes", SelectionList), self.query_one("#recipients", SelectionList)):
            if picker.option_count:
                picker.highlighted = 0
        for key, empty, items in (("nodes", "no nodes yet", nodes),
                                  ("recipients", "no operators yet (keyturn operator add)", operators)):
            note = self.query_one(f"#note-{key}", Label)
            note.update("" if items else empty)
            note.display = not items
        self._setup_done = True
        if untouched:  # what the task holds is not a change the user made
            self._initial = self._snapshot()
        self._update_preview()

    def _picked(self, widget_id: str, saved: list[str]) -> list[str]:
        """A node or recipient picker's choice; the task's own until the picker is filled."""
        return list(self.query_one(f"#{widget_id}", SelectionList).selected) if self._setup_done else list(saved)

    # -- field helpers -----------------------------------------------------------------------------
    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value

    def _select(self, widget_id: str) -> str:
        return str(self.query_one(f"#{widget_id}", Select).value)

    def _checked(self, widget_id: str) -> bool:
        return self.query_one(f"#{widget_id}", Checkbox).value

    def _rules(self, length: int | None = None) -> PasswordRules:
        if length is None:
            try:
                length = int(self._value("length"))
            except ValueError:
                length = 0
        return PasswordRules(length=length, lower=self._checked("lower"), upper=self._checked("upper"),
                             digits=self._checked("digits"), symbols=self._checked("symbols"),
                             exclude=self._value("exclude"))

    def _check_length(self, v: str) -> None:
        length = _int("length")(v)
        try:
            rules = self._rules(length)
        except NoMatches:  # the checkboxes are not mounted yet: check against the task's own rules
            rules = dataclasses.replace(self.spec.rules, length=length)
        validate_rules(rules)

    def _apply_visibility(self) -> None:
        specific = self._select("strategy") == "specific"
        password = self._select("type") == "password"
        periodic = self._select("periodic")
        shown = {
            "password": specific and password,
            "key_strategy": not password,
            "key_algorithm": not password and not specific,
            "private_key": not password and specific,
            "passphrase": not password and specific,
            "rules": password and not specific,
        }
        for key, visible in shown.items():
            self.query_one(f"#f-{key}").display = visible
            if not visible:
                self.show_error(key, "")
        self.query_one("#interval").display = periodic == "interval"
        self.query_one("#cron").display = periodic == "cron"
        self.query_one("#start").display = periodic != "none"
        self.query_one("#next-runs").display = periodic != "none"

    # -- assets picker -----------------------------------------------------------------------------
    def _fill_assets(self) -> None:
        ctx, search = self.ctx, self._value("asset-filter").strip()
        self.read_in_thread("form-assets", lambda: asset_choices(ctx, search=search, limit=ASSET_CHOICES),
                            self._show_assets, name="Loading assets")

    def _show_assets(self, choices: list[tuple[str, str]]) -> None:
        picker = self.query_one("#assets", SelectionList)
        chosen = set(self.chosen_assets)
        with self.prevent(SelectionList.SelectedChanged):
            picker.clear_options()
            # Chosen assets stay listed whatever the filter, so they can be un-chosen.
            names = [n for n, _ in choices]
            extra = [n for n in self.chosen_assets if n not in names]
            picker.add_options([(f"{n}  {a}", n, n in chosen) for n, a in choices] + [(n, n, True) for n in extra])
        if picker.option_count:
            picker.highlighted = 0  # so Space works as soon as the list has the focus
        more = " (first 200 shown; type to filter)" if len(choices) >= ASSET_CHOICES else ""
        self._update_chosen(more)

    def _update_chosen(self, more: str = "") -> None:
        chosen = self.chosen_assets
        text = f"chosen: {len(chosen)}" + (": " + ", ".join(chosen[:6]) + (" …" if len(chosen) > 6 else "")
                                             if chosen else "") + more
        self.query_one("#assets-chosen", Label).update(text)

    @on(SelectionList.SelectedChanged, "#assets")
    def _assets_changed(self, event: SelectionList.SelectedChanged) -> None:
        picker = event.selection_list
        selected = set(picker.selected)
        listed = {picker.get_option_at_index(i).value for i in range(picker.option_count)}
        kept = [a for a in self.chosen_assets if a not in listed or a in selected]
        kept += [a for a in picker.selected if a not in kept]
        self.chosen_assets = kept
        self._update_chosen()
        self.show_error("assets", "")
        self._schedule_preview()

    @on(SelectionList.SelectedChanged, "#nodes")
    def _nodes_changed(self) -> None:
        self.show_error("assets", "")
        self._schedule_preview()

    # -- live reactions ----------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        """Show the field's own error as the user types; refresh the preview and the next runs."""
        widget_id = event.input.id or ""
        if widget_id == "asset-filter":
            if self._search_timer is not None:
                self._search_timer.stop()
            self._search_timer = self.set_timer(SEARCH_DELAY, self._fill_assets)
            return
        if event.validation_result is not None:  # an input without validators keeps an error a save put there
            self.show_typing_error(event)
        if widget_id in ("interval", "cron", "start"):
            self._update_next_runs()
        if widget_id in ("accounts",):
            self._schedule_preview()

    def on_select_changed(self, event: Select.Changed) -> None:
        """Strategy, type and schedule choices show and hide the fields that apply."""
        self._apply_visibility()
        self._update_next_runs()
        self._schedule_preview()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """Rule checkboxes change whether the length is possible."""
        if event.checkbox.id in ("lower", "upper", "digits", "symbols"):
            self.show_check("rules", self.query_one("#length", Input).validate(self._value("length")))

    def _update_next_runs(self) -> None:
        label = self.query_one("#next-runs", Label)
        periodic = self._select("periodic")
        try:
            interval = _int("interval")(self._value("interval")) if periodic == "interval" else None
            cron = self._value("cron").strip() if periodic == "cron" else None
            validate_schedule(interval, cron)
            start = tasks.parse_time(self._value("start")) if self._value("start").strip() else None
        except InputError:
            label.update("next runs: (fix the schedule)")
            return
        if periodic == "none":
            label.update("")
            return
        runs = next_runs(interval, cron, start or self.now(), count=3, anchor=start) if (interval or cron) else []
        if start is not None and start > self.now():
            runs = [start, *runs][:3]
        label.update("next runs: " + ", ".join(r.strftime("%Y-%m-%d %H:%M") for r in runs) + " UTC" if runs else "")

    def _schedule_preview(self) -> None:
        # Debounced, then read in a thread worker (at 100k accounts a preview takes a second).
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._update_preview)

    def _update_preview(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
            self._preview_timer = None
        line = self.query_one("#form-preview", Label)
        users = split_names(self._value("accounts"))
        nodes = self._picked("nodes", self.spec.nodes)
        if not users or not (self.chosen_assets or nodes):
            self.drop_read("form-preview")  # a preview still on its way is out of date
            line.update("targets: choose accounts and assets or nodes")
            return
        spec = dataclasses.replace(_BASE, usernames=users, assets=list(self.chosen_assets), nodes=nodes)
        ctx = self.ctx

        def summary() -> str:
            try:
                return "targets: " + visible_preview(ctx, spec).summary()
            except KeyturnError as exc:
                return f"targets: {exc}"

        self.read_in_thread("form-preview", summary, line.update, name="Preview")

    # -- save --------------------------------------------------------------------------------------
    def _build(self) -> tuple[TaskSpec | None, dict[str, str]]:
        """The spec the form describes, and the errors of every visible field (empty when all pass)."""
        errors: dict[str, str] = {}
        for field in self.query(Input):
            if field.id == "asset-filter" or not field.validators or not self._visible(field):
                continue
            result = field.validate(field.value)
            if result is not None and not result.is_valid:
                errors.setdefault(self.field_key(field), "; ".join(result.failure_descriptions))
        nodes = self._picked("nodes", self.spec.nodes)
        if not self.chosen_assets and not nodes:
            errors.setdefault("assets", "targets: choose at least one asset or node")
        if not split_names(self._value("accounts")):
            errors.setdefault("accounts", "accounts: give at least one user name")
        strategy, secret_type = self._select("strategy"), self._select("type")
        specific_secret: str | None = None
        passphrase: str | None = None
        if strategy == "specific" and secret_type == "password":
            specific_secret = self._value("password")
        elif strategy == "specific":
            specific_secret = self.query_one("#private_key", TextArea).text.strip() or None
            path = self._value("private_key_path").strip()
            if path:
                try:
                    specific_secret = Path(path).expanduser().read_text()
                except OSError as exc:
                    errors.setdefault("private_key", f"private key: cannot read {path}: {exc.strerror}")
            if specific_secret is None and "private_key" not in errors:
                errors["private_key"] = "private key: paste a key or give a file path"
            passphrase = self._value("passphrase") or None
        periodic = self._select("periodic")
        interval = cron = start = None
        try:
            if periodic == "interval":
                interval = _int("interval")(self._value("interval"))
            elif periodic == "cron":
                cron = self._value("cron").strip()
            if periodic != "none" and self._value("start").strip():
                start = tasks.parse_time(self._value("start"))
        except InputError as exc:
            errors.setdefault("schedule", str(exc))
        try:
            length = int(self._value("length"))
        except ValueError:
            length = 0
            if secret_type == "password" and strategy == "random":
                errors.setdefault("rules", "length: must be a whole number")
        if errors:
            return None, errors
        # The form in the words of a task file: core.tasks.task_changes is the one mapper to a TaskSpec.
        data: dict[str, object] = {
            "name": self._value("name").strip(), "accounts": self._value("accounts"),
            "assets": list(self.chosen_assets), "nodes": nodes, "type": secret_type, "strategy": strategy,
            "key_strategy": self._select("key_strategy"), "key_algorithm": self._select("key_algorithm"),
            "rules": self._rules(length).to_dict(), "check": self._checked("check"), "active": self._checked("active"),
            "host": {"sudo": self._checked("sudo"), "chpasswd_path": self._value("chpasswd").strip(),
                     "create_user": self._checked("create_user"), "verify": self._select("verify")},
            "description": self._value("description"),
            "recipients": self._picked("recipients", self.spec.recipients),
            **{k: v for k, v in (("interval", interval), ("cron", cron or None), ("start", start)) if v is not None},
        }
        try:
            changes = tasks.task_changes(data)
        except InputError as exc:
            return None, {error_field(exc): str(exc)}
        spec = dataclasses.replace(TaskSpec(name="", usernames=[]), **changes, specific_secret=specific_secret,
                                   specific_passphrase=passphrase, become_password=self._value("become") or None)
        return spec, {}

    def _visible(self, widget: Widget) -> bool:
        return all(a.display for a in widget.ancestors_with_self if isinstance(a, Widget))

    def action_save(self) -> None:
        """Check every field; save through core (in a thread worker) only when all pass, else show each field's
        error."""
        if self.saving:
            return
        for label in self.query(".field-error"):
            label.display = False
        self._update_preview()
        spec, errors = self._build()
        if spec is None:
            for key, message in errors.items():
                self.show_error(key, message)
            self.show_error("form", f"{len(errors)} field{'s' if len(errors) != 1 else ''} to fix; nothing saved")
            self._focus_first_error()
            return
        ctx, original = self.ctx, self.original

        # A step-up (StepUpRequired) comes first: a task decides where new secrets go.
        def write() -> TaskSpec:
            if original is None:
                return tasks.create_task(ctx, spec)
            changes = {f.name: getattr(spec, f.name) for f in dataclasses.fields(TaskSpec)
                       if f.name not in ("id", "next_run_at", "created_at", "updated_at")}
            return tasks.edit_task(ctx, original.name, **changes)

        self.save_in_thread(f"Saving task {spec.name}", write, self.dismiss)

    def field_failed(self, exc: Exception) -> None:
        """Core's error on its field's line (and "nothing saved" on the form's), with the focus on that field."""
        key = error_field(exc) if isinstance(exc, InputError) else "form"
        self.show_error(key, str(exc))
        if key != "form":
            self.show_error("form", "nothing saved")
        self._focus_first_error()

    def _focus_first_error(self) -> None:
        """Focus the widget the first error is about (the bad cron line, not the schedule's Select) and show it."""
        for label in self.query(".field-error"):
            if not label.display or label.id == "err-form":
                continue
            field = label.parent
            if not isinstance(field, Widget):
                return
            widgets = [w for w in field.query("Input, Select, SelectionList, TextArea") if w.focusable and self._visible(w)]
            invalid = [w for w in widgets if isinstance(w, Input) and w.validators and not w.validate(w.value).is_valid]
            typed = [w for w in widgets if isinstance(w, (Input, TextArea))]
            target = next(iter(invalid or typed or widgets), None)
            if target is not None:
                self._focus_field(target, around=field)
            return

    def _snapshot(self) -> tuple:
        """Every value the user can change, to tell whether Esc would throw work away."""
        return (tuple(w.value for w in self.query(Input)), tuple(w.value for w in self.query(Select)),
                tuple(w.value for w in self.query(Checkbox)), tuple(tuple(w.selected) for w in self.query(SelectionList)
                                                               if w.id != "assets"),
                self.query_one("#private_key", TextArea).text, tuple(self.chosen_assets))
