"""Change-secret tasks: validation, create/edit/copy/delete with audit, next run times, and TOML task files."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from datetime import date, datetime, time, timezone
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlmodel import func, select

from core.config import Settings
from core.context import Context
from core.names import USERNAME_RULE, is_username
from core.errors import InputError, KeyturnError
from core import values
from core.operators import require
from core.values import KEY_STRATEGIES as KEY_STRATEGIES, SECRET_TYPES  # re-exported: core.tasks.KEY_STRATEGIES
from core.params import apply as apply_params, validate as validate_params
from core.schedule import next_runs, validate_schedule
from core.scopes import task_in_scope, task_visible, visible_tasks
from core.secretgen import KEY_ALGORITHMS, check_specific_password, load_private_key, validate_rules
from storage import tasks as repo
from storage.db import Database
from storage.locks import lock_holder
from storage.tables import Operator, utcnow
from storage.types import HostParams, PasswordRules, TaskSpec

SECRET_STRATEGIES = ("random", "specific")
VERIFY_MODES = ("ssh", "none")
MAX_NAME = 100
MAX_DESCRIPTION = 2000
# The chpasswd path goes into a remote command line, so it must be a plain path with no shell syntax.
_COMMAND_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")
# The programs a task may name (they run as root on every target, fed the new password): chpasswd where
# systems keep it. More only through allowed_programs in the protected config file.
CHPASSWD_PATHS: tuple[str, ...] = ("chpasswd", "/usr/sbin/chpasswd", "/sbin/chpasswd", "/usr/bin/chpasswd",
                                   "/bin/chpasswd")


# Login shells a created user may get: what /etc/shells lists on common systems, and the no-login ones. A
# shell runs whenever that user logs in; more only through allowed_programs.
SHELLS: tuple[str, ...] = tuple(f"{d}/{n}" for n in ("sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh")
                                for d in ("/bin", "/usr/bin")) + ("/sbin/nologin", "/usr/sbin/nologin",
                                                                 "/bin/false", "/usr/bin/false")
# Commands a user may be given through sudo (they run as root) without the config file naming them: only
# ones that report and change nothing. More only through allowed_programs.
SUDO_PROGRAMS: tuple[str, ...] = ("/usr/bin/whoami", "/bin/whoami", "/usr/bin/id", "/bin/id")
_MORE = "more only via allowed_programs in the config file"


def _configured(settings: Settings | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (settings.allowed_programs if settings else "").split(",") if p.strip())


def allowed_programs(settings: Settings | None) -> tuple[str, ...]:
    """Program paths a task's parameters may name: CHPASSWD_PATHS plus the config file's allowed_programs."""
    return CHPASSWD_PATHS + _configured(settings)


def check_program_paths(params: HostParams, settings: Settings | None) -> None:
    """InputError naming the field when a program the parameters name is not on the allow-list: chpasswd (root
    runs it, fed the new password), a created user's shell, and each sudo command (root runs it for that user).
    A sudo command matches an allowed entry when it is the entry or the entry followed by arguments."""
    if not isinstance(params.chpasswd_path, str) or not _COMMAND_PATH.match(params.chpasswd_path):
        raise InputError(f"chpasswd path: {params.chpasswd_path!r} must be a plain command or path (no spaces or shell characters)", field="chpasswd path")
    if params.chpasswd_path not in allowed_programs(settings):
        raise InputError(f"chpasswd path: {params.chpasswd_path!r} is not an allowed program (allowed: "
                         f"{', '.join(allowed_programs(settings))}; {_MORE})", field="chpasswd path")
    if params.shell and params.shell not in SHELLS + _configured(settings):
        raise InputError(f"shell: {params.shell!r} is not an allowed login shell (allowed: {', '.join(SHELLS)}; "
                         f"{_MORE})", field="shell")
    allowed_sudo = SUDO_PROGRAMS + _configured(settings)
    for command in (c.strip() for c in (params.sudo_commands or "").split(",")):
        if command and not any(command == a or command.startswith(a + " ") for a in allowed_sudo):
            raise InputError(f"sudo: {command!r} is not an allowed sudo command (allowed: {', '.join(SUDO_PROGRAMS)}; "
                             f"{_MORE})", field="sudo")


# -- audit -----------------------------------------------------------------------------------------
def _audit(ctx: Context, action: str, object_id: str, detail: dict[str, Any]) -> repo.AuditHook:
    """A hook that writes the audit event in the task's own transaction."""
    from core.audit import record_event_in

    def hook(session: Any, task_id: int) -> None:
        record_event_in(session, ctx, action, "task", object_id, {"id": task_id, **detail})

    return hook


# -- validation ------------------------------------------------------------------------------------
def _check_text(field: str, value: Any, max_len: int, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise InputError(f"{field}: must be text", field=field)
    if not value.strip() and not empty_ok:
        raise InputError(f"{field}: is empty", field=field)
    if len(value) > max_len:
        raise InputError(f"{field}: longer than {max_len} characters", field=field)
    if any(not (c.isprintable() or c in " \t") for c in value):
        raise InputError(f"{field}: contains a line break or control character", field=field)


def validate_task(spec: TaskSpec, db: Database | None = None, settings: Settings | None = None) -> None:
    """Raise InputError naming the field when the task cannot be saved; db enables the recipients check."""
    _check_text("name", spec.name, MAX_NAME)
    if spec.name != spec.name.strip():
        raise InputError("name: has leading or trailing spaces", field="name")
    _check_text("description", spec.description, MAX_DESCRIPTION, empty_ok=True)
    if not spec.usernames:
        raise InputError("accounts: give at least one user name", field="accounts")
    for user in spec.usernames:
        if not isinstance(user, str) or not user.strip():
            raise InputError("accounts: a user name is empty", field="accounts")
        if not is_username(user):
            raise InputError(f"accounts: {user!r} is not a valid user name ({USERNAME_RULE})", field="accounts")
    if not spec.assets and not spec.nodes:
        raise InputError("targets: choose at least one asset or node", field="targets")
    if spec.secret_strategy not in SECRET_STRATEGIES:
        raise InputError(f"strategy: must be one of {', '.join(SECRET_STRATEGIES)}, got {spec.secret_strategy!r}", field="strategy")
    if spec.secret_type not in SECRET_TYPES:
        raise InputError(f"type: must be password or ssh-key, got {spec.secret_type!r}", field="type")
    if spec.ssh_key_strategy not in KEY_STRATEGIES:
        raise InputError(f"key strategy: must be one of {', '.join(KEY_STRATEGIES)}, got {spec.ssh_key_strategy!r}", field="key strategy")
    if spec.key_algorithm not in KEY_ALGORITHMS:
        raise InputError(f"key algorithm: must be one of {', '.join(KEY_ALGORITHMS)}, got {spec.key_algorithm!r}", field="key algorithm")
    if spec.secret_strategy == "specific":
        if spec.specific_secret is None:
            what = "password" if spec.secret_type == "password" else "private key"
            raise InputError(f"{what}: the specific strategy needs one", field=what)
        if spec.secret_type == "password":
            check_specific_password(spec.specific_secret)
            if spec.specific_passphrase is not None:
                raise InputError("key passphrase: only a private key has a passphrase", field="key passphrase")
        else:
            load_private_key(spec.specific_secret, spec.specific_passphrase)
    else:
        if spec.specific_secret is not None or spec.specific_passphrase is not None:
            raise InputError("strategy: a specific secret was given but the strategy is random", field="strategy")
        if spec.secret_type == "password":
            validate_rules(spec.rules)
    params = spec.params
    if params.verify not in VERIFY_MODES:
        raise InputError(f"verify: must be one of {', '.join(VERIFY_MODES)}, got {params.verify!r}", field="verify")
    validate_params(params)
    check_program_paths(params, settings)
    if db is not None:
        from core.params import check_for_platforms
        from core.targets import scope_platforms

        check_for_platforms(params, scope_platforms(db, spec))
    if spec.become_password is not None:
        check_specific_password(spec.become_password, field="become password")
    if spec.interval_hours is not None and (isinstance(spec.interval_hours, bool) or not isinstance(spec.interval_hours, int)):
        raise InputError(f"interval: must be a whole number of hours, got {spec.interval_hours!r}", field="interval")
    validate_schedule(spec.interval_hours, spec.cron)
    if spec.start_at is not None:
        if spec.start_at.tzinfo is None:
            raise InputError("start: needs a time zone (e.g. 2025-01-31T02:00:00Z)", field="start")
        if not spec.periodic:
            raise InputError("start: only a task with an interval or cron schedule has a start time", field="start")
    for r in spec.recipients:
        if not isinstance(r, str) or not r.strip():
            raise InputError("recipients: a recipient name is empty", field="recipients")
    if db is not None and spec.recipients:
        with db.read() as s:
            # Recipients are checked only once operators exist, so tasks can be set up before operators are.
            if s.exec(select(func.count()).select_from(Operator)).one():
                known = set(s.exec(select(Operator.name).where(Operator.name.in_(spec.recipients))).all())  # type: ignore[attr-defined]
                missing = [r for r in spec.recipients if r not in known]
                if missing:
                    raise InputError(f"recipients: no operator named {', '.join(repr(m) for m in missing)}", field="recipients")


def _normalized(spec: TaskSpec) -> TaskSpec:
    """Copies with duplicate names removed and start_at in UTC."""
    spec = dataclasses.replace(spec)
    spec.usernames = [u.strip() if isinstance(u, str) else u for u in dict.fromkeys(spec.usernames)]
    spec.assets = list(dict.fromkeys(a.strip() for a in spec.assets))
    spec.nodes = list(dict.fromkeys(n.strip() for n in spec.nodes))
    spec.recipients = list(dict.fromkeys(spec.recipients))
    spec.cron = " ".join(spec.cron.split()) if spec.cron else None
    if spec.start_at is not None and spec.start_at.tzinfo is not None:
        spec.start_at = spec.start_at.astimezone(timezone.utc)
    if isinstance(spec.rules, dict):
        spec.rules = PasswordRules.from_dict(spec.rules)
    if isinstance(spec.params, dict):
        spec.params = HostParams.from_dict(spec.params)
    return spec


# -- schedule --------------------------------------------------------------------------------------
def first_run_at(spec: TaskSpec, now: datetime | None = None) -> datetime | None:
    """When a new, edited or re-activated task is first due: its next slot (None if not periodic or inactive).

    Never "now": a cron line "0 3 * * *" promises 03:00, and an interval of N hours the creation + N hours
    (or the first slot of start_at's grid after now). Whoever wants a run at once presses Run now.
    """
    if not spec.periodic or not spec.active:
        return None
    return next_run_after(spec, now or utcnow())


def next_run_after(spec: TaskSpec, after: datetime) -> datetime | None:
    """The next time the schedule fires strictly after `after` (None when not periodic)."""
    if not spec.periodic:
        return None
    if spec.start_at is not None and spec.start_at > after:
        return spec.start_at
    runs = next_runs(spec.interval_hours, spec.cron, after, count=1, anchor=spec.start_at)
    return runs[0] if runs else None


def upcoming_runs(spec: TaskSpec, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next count run times of an active periodic task (the stored next run first)."""
    if not spec.periodic or not spec.active:
        return []
    now = now or utcnow()
    first = spec.next_run_at or first_run_at(spec, now)
    if first is None:  # a schedule with no slot ahead (an impossible cron date) has no upcoming runs
        return []
    # An overdue slot runs at the scheduler's next check, so "now" is what a person should read.
    runs = [max(first, now)]
    while len(runs) < count:
        nxt = next_run_after(spec, runs[-1])
        if nxt is None:
            break
        runs.append(nxt)
    return runs


# -- operations ------------------------------------------------------------------------------------
def _step_up(ctx: Context, action: str) -> None:
    # A task decides which accounts change and where their new secrets go: a fresh code once operators exist.
    from core.stepup import require_step_up

    require_step_up(ctx, ctx.mfa, action)


def _save(ctx: Context, spec: TaskSpec, create: bool, audit: repo.AuditHook | None) -> TaskSpec:
    return repo.save_task(ctx.db, spec, create=create, audit=audit)  # TaskInputError is an InputError with its field


def _visible(ctx: Context, name: str) -> TaskSpec:
    # The stored task, or NotFound (also for a task the acting operator's scope does not show: core.scopes).
    spec = repo.get_task(ctx.db, name)
    task_visible(ctx, spec.id, name)
    return spec


def _actable(ctx: Context, name: str, verb: str) -> TaskSpec:
    # The stored task, when the acting operator's scope covers every node and asset it names.
    spec = _visible(ctx, name)
    task_in_scope(ctx, spec, verb)
    return spec


HIDDEN_ASSET = "(an asset outside your scope)"


def _hide_assets(ctx: Context, specs: list[TaskSpec]) -> list[TaskSpec]:
    # In a task the acting operator sees but may not change, assets outside the scope are not named.
    names = sorted({a for s in specs for a in s.assets})
    if not ctx.operator or not names:
        return specs
    from storage.scopes import targets_outside

    _, hidden = targets_outside(ctx.db, ctx.operator, [], names)
    for s in specs:
        gone = [a for a in s.assets if a in hidden]
        if gone:
            s.assets = [a for a in s.assets if a not in hidden] + [HIDDEN_ASSET] * len(gone)
    return specs


def get_task(ctx: Context, name: str) -> TaskSpec:
    """One task with its secrets decrypted (never print them). NotFound for a task outside the acting
    operator's scope; in a task they see but may not change, assets outside the scope read HIDDEN_ASSET."""
    return _hide_assets(ctx, [_visible(ctx, name)])[0]


def secrets_set(ctx: Context, name: str) -> dict[str, bool]:
    """Which secrets the task holds (TaskSpec field -> bool), without decrypting them."""
    _visible(ctx, name)
    return repo.secrets_set(ctx.db, name)


def list_tasks(ctx: Context) -> list[TaskSpec]:
    """The tasks the acting operator may see (every task when not limited to a scope), without secrets."""
    visible = visible_tasks(ctx)
    return _hide_assets(ctx, [t for t in repo.list_tasks(ctx.db) if visible is None or t.id in visible])


def create_task(ctx: Context, spec: TaskSpec) -> TaskSpec:
    """Validate and store a new task; a periodic one is first due at its next slot (never at once)."""
    _step_up(ctx, "task.create")
    spec = _normalized(spec)
    task_in_scope(ctx, spec, "create", typed=True)
    validate_task(spec, ctx.db, ctx.settings)
    spec.id = None
    spec.next_run_at = first_run_at(spec)
    return _save(ctx, spec, create=True, audit=_audit(ctx, "task.create", spec.name, {
        "secret_type": spec.secret_type, "strategy": spec.secret_strategy}))


_EDITABLE = {f.name for f in dataclasses.fields(TaskSpec)} - {"id", "next_run_at", "created_at", "updated_at"}
_SCHEDULE_FIELDS = ("interval_hours", "cron", "start_at")


def edit_task(ctx: Context, name: str, /, **changes: Any) -> TaskSpec:
    """Change some fields of a task (TaskSpec field names, `name=` renames); the whole task is validated again."""
    unknown = set(changes) - _EDITABLE
    if unknown:
        raise InputError(f"edit: unknown field {', '.join(sorted(unknown))}", field="edit")
    _step_up(ctx, "task.params" if "params" in changes else "task.edit")
    old = _actable(ctx, name, "edit")
    spec = dataclasses.replace(old, **changes)
    # Moving away from a specific secret drops it rather than keeping an unused secret in the vault.
    if spec.secret_strategy == "random" and "specific_secret" not in changes:
        spec.specific_secret = None
    if (spec.secret_strategy == "random" or spec.secret_type == "password") and "specific_passphrase" not in changes:
        spec.specific_passphrase = None
    spec = _normalized(spec)
    task_in_scope(ctx, spec, "edit", typed=True)
    validate_task(spec, ctx.db, ctx.settings)
    old_sched = (old.interval_hours, old.cron, old.start_at)
    new_sched = (spec.interval_hours, spec.cron, spec.start_at)
    if not spec.active or not spec.periodic:
        spec.next_run_at = None
    elif not old.active or not old.periodic:
        spec.next_run_at = first_run_at(spec)  # newly scheduled or re-activated: its next slot
    elif old_sched != new_sched:
        spec.next_run_at = next_run_after(spec, utcnow())
    # Field names only: the detail never carries a value, so no secret can reach the audit trail.
    changed = sorted(k for k in changes if getattr(old, k) != getattr(spec, k))
    detail: dict[str, Any] = {"fields": changed}
    if spec.name != name:
        detail["renamed_from"] = name
    return _save(ctx, spec, create=False, audit=_audit(ctx, "task.edit", spec.name, detail))


def delete_task(ctx: Context, name: str) -> None:
    """Delete a task; refused while a run of it holds the task lock."""
    require(ctx, "edit")
    spec = _actable(ctx, name, "delete")
    assert spec.id is not None
    holder = lock_holder(ctx.db, spec.id)
    if holder is not None:
        raise KeyturnError(f"task {name!r} is running ({holder}); wait for it to finish or cancel it first")
    repo.delete_task(ctx.db, name, audit=_audit(ctx, "task.delete", name, {}))


def copy_task(ctx: Context, name: str, new_name: str) -> TaskSpec:
    """A new task with the settings and secrets of name; scheduled as a new task would be."""
    require(ctx, "edit")
    spec = _actable(ctx, name, "copy")
    spec.name = new_name
    spec = _normalized(spec)
    validate_task(spec, ctx.db, ctx.settings)
    _step_up(ctx, "task.create")  # a copy is a new task with the same targets and secrets
    spec.id = None
    spec.next_run_at = first_run_at(spec)
    return _save(ctx, spec, create=True, audit=_audit(ctx, "task.copy", spec.name, {"copied_from": name}))


def set_active(ctx: Context, name: str, active: bool) -> TaskSpec:
    """Activate (a periodic task becomes due at its next slot) or deactivate a task."""
    require(ctx, "edit")
    spec = _actable(ctx, name, "activate" if active else "deactivate")
    if spec.active == active:
        return spec
    if active:
        _step_up(ctx, "task.edit")  # an active task runs on its schedule: as much as running it
    spec.active = active
    when = first_run_at(spec) if active else None
    repo.set_task_active(ctx.db, name, active, when,
                         audit=_audit(ctx, "task.activate" if active else "task.deactivate", name, {}))
    return repo.get_task(ctx.db, name)


# -- task files ------------------------------------------------------------------------------------
_FILE_KEYS = {
    "name", "description", "accounts", "assets", "nodes", "type", "strategy", "key_strategy", "key_algorithm",
    "key_file", "check", "active", "recipients", "interval", "cron", "start", "rules", "host", "params",
}
_RULE_KEYS = {"length": int, "lower": bool, "upper": bool, "digits": bool, "symbols": bool, "exclude": str}
_HOST_KEYS = {"sudo": bool, "chpasswd_path": str, "create_user": bool, "verify": str}


def parse_secret_type(value: str) -> str:
    """A task's `type` (core.values.parse_secret_type), its error prefixed with the field as task errors are."""
    try:
        return values.parse_secret_type(value, default=None)
    except values.BadValue as exc:
        raise InputError(f"type: {exc}", field="type") from None


def parse_time(value: str | datetime | date, field: str = "start") -> datetime:
    """An ISO time; one without a zone is taken as UTC."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time(0, 0))
    else:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{field}: {value!r} is not an ISO time such as 2025-01-31T02:00:00Z", field=field) from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise InputError(f"{where}: must be a list of names or a comma-separated string", field=where)


def _typed(value: Any, kind: type, where: str) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise InputError(f"{where}: must be {'true or false' if kind is bool else kind.__name__}, got {value!r}", field=where)
    return value


def load_task_file(path: str | Path) -> TaskSpec:
    """Read a task from a TOML file; errors read `FILE: key: problem`. A key_file is relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from None
    try:
        return _spec_from_mapping(data, path)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _spec_from_mapping(data: dict[str, Any], path: Path) -> TaskSpec:
    if "name" not in data:
        raise InputError("name: missing", field="name")
    spec = TaskSpec(name="", usernames=[])
    return dataclasses.replace(spec, **task_changes(data, None, base_dir=path.parent))


def task_changes(data: Mapping[str, Any], current: TaskSpec | None = None, *,
                 base_dir: Path | None = None) -> dict[str, Any]:
    """The one mapper from task input to TaskSpec fields: a task file's TOML, the CLI's flags and a script's
    mapping all use these keys (name, accounts, assets, nodes, type, strategy, interval, rules, host...).

    Only the keys given become changes; rules and host settings merge over current's (or the defaults). On an
    edit, a new interval clears the cron line and the other way round. key_file is read relative to base_dir.
    """
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise InputError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_FILE_KEYS))})", field=unknown[0])
    ch: dict[str, Any] = {}
    if "name" in data:
        ch["name"] = _typed(data["name"], str, "name")
    if "accounts" in data:
        ch["usernames"] = _names(data["accounts"], "accounts")
    for key in ("assets", "nodes", "recipients"):
        if key in data:
            ch[key] = _names(data[key], key)
    if "description" in data:
        ch["description"] = _typed(data["description"], str, "description")
    if "type" in data:
        ch["secret_type"] = parse_secret_type(_typed(data["type"], str, "type"))
    for key, field_name in (("strategy", "secret_strategy"), ("key_strategy", "ssh_key_strategy"),
                            ("key_algorithm", "key_algorithm")):
        if key in data:
            ch[field_name] = _typed(data[key], str, key)
    if "check" in data:
        ch["check_after_change"] = _typed(data["check"], bool, "check")
    if "active" in data:
        ch["active"] = _typed(data["active"], bool, "active")
    if "interval" in data:
        ch["interval_hours"] = _typed(data["interval"], int, "interval")
    if "cron" in data:
        ch["cron"] = _typed(data["cron"], str, "cron")
    if current is not None and ("interval" in data) != ("cron" in data):
        ch.setdefault("interval_hours", None)
        ch.setdefault("cron", None)
    if "start" in data:
        if not isinstance(data["start"], (str, datetime, date)):
            raise InputError(f"start: must be an ISO time, got {data['start']!r}", field="start")
        ch["start_at"] = parse_time(data["start"])
    rules = _typed(data.get("rules", {}), dict, "rules")
    for key, value in rules.items():
        if key not in _RULE_KEYS:
            raise InputError(f"rules.{key}: unknown key (known: {', '.join(_RULE_KEYS)})", field="rules")
        _typed(value, _RULE_KEYS[key], f"rules.{key}")
    if rules or current is None:
        base_rules = current.rules if current else PasswordRules()
        ch["rules"] = dataclasses.replace(base_rules, **rules)
    host = _typed(data.get("host", {}), dict, "host")
    for key, value in host.items():
        if key not in _HOST_KEYS:
            raise InputError(f"host.{key}: unknown key (known: {', '.join(_HOST_KEYS)})", field="host")
        _typed(value, _HOST_KEYS[key], f"host.{key}")
    params = _typed(data.get("params", {}), dict, "params")
    if host or params or current is None:
        base_params = current.params if current else HostParams()
        merged = dataclasses.replace(base_params, **{("use_sudo" if k == "sudo" else k): v for k, v in host.items()})
        try:  # [params]: sequences, self-change, user parameters (core/params.py)
            ch["params"] = apply_params(merged, params)
        except InputError as exc:
            raise InputError(f"params.{exc}", field=exc.field) from None
    if "key_file" in data:
        key_path = Path(_typed(data["key_file"], str, "key_file")).expanduser()
        if base_dir is not None and not key_path.is_absolute():
            key_path = base_dir / key_path
        try:
            ch["specific_secret"] = key_path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"key_file: cannot read {key_path} ({getattr(exc, 'strerror', None) or exc})",
                             field="key_file") from None
        ch.setdefault("secret_type", "ssh_key")
        ch.setdefault("secret_strategy", "specific")
        ch.setdefault("specific_passphrase", None)  # a new key: its passphrase comes with it or not at all
    return ch
