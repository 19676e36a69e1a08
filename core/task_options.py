"""A task's options from issue 16: heartbeat schedule, change windows, retries, dependency steps, hand-over.

One use case sets them: validate every field (errors name it), store them with their audit event in one
transaction, return the stored options.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from core.context import Context
from core.errors import InputError
from core.schedule import next_runs, validate_schedule
from core.scopes import asset_visible, task_in_scope, task_visible
from core.windows import parse_windows
from storage import drift as store
from storage.drift import DependencyStep, TaskOptions
from core.errors import NotFound

MAX_RETRIES = 10
MAX_RETRY_DELAY_MINUTES = 24 * 60
MAX_COMMAND = 4000
_FIELDS = {f.name for f in dataclasses.fields(TaskOptions)} - {"next_heartbeat_at"}


def validate_options(ctx: Context, opts: TaskOptions, secret_type: str) -> None:
    """Raise InputError naming the field when the options cannot be saved."""
    try:
        validate_schedule(opts.heartbeat_interval_hours, opts.heartbeat_cron)
    except InputError as exc:
        raise InputError(f"heartbeat {exc}") from None
    parse_windows(opts.windows)
    for name, value, top in (("retries", opts.retries, MAX_RETRIES),
                             ("retry delay", opts.retry_delay_minutes, MAX_RETRY_DELAY_MINUTES)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise InputError(f"{name}: must be a whole number from 0 to {top}, got {value!r}", field=name)
    if opts.dependencies and secret_type != "password":
        raise InputError("dependencies: only password tasks can have dependency steps (the secret goes on stdin as one line)", field="dependencies")
    for i, step in enumerate(opts.dependencies, 1):
        where = f"dependency {i}"
        if not step.command.strip():
            raise InputError(f"{where}: the command is empty", field=where)
        if len(step.command) > MAX_COMMAND or "\0" in step.command:
            raise InputError(f"{where}: the command is longer than {MAX_COMMAND} characters or holds a NUL", field=where)
        for label, name in (("asset", step.asset), ("run on", step.run_on)):
            # An asset outside the acting operator's scope reads as missing (core.scopes).
            if name and name != "*" and (store.asset_id_by_name(ctx.db, name) is None or not asset_visible(ctx, name)):
                raise InputError(f"{where}: {label}: no asset named {name!r}", field=where)
        if not step.asset:
            raise InputError(f"{where}: asset: name the asset whose accounts it follows (or *)", field=where)


def get_options(ctx: Context, task_name: str) -> TaskOptions:
    """The options of a task by name."""
    from storage.tasks import get_task

    try:
        spec = get_task(ctx.db, task_name)
        task_visible(ctx, spec.id, task_name)  # a task outside the acting operator's scope is not there
    except NotFound:
        raise InputError(f"task: no task named {task_name!r}", field="task") from None
    assert spec.id is not None
    return store.get_task_options(ctx.db, spec.id)


def first_heartbeat_at(opts: TaskOptions, now: datetime) -> datetime | None:
    """When a heartbeat schedule first fires after now (None without one)."""
    if not opts.heartbeat_scheduled:
        return None
    return next_runs(opts.heartbeat_interval_hours, opts.heartbeat_cron, now, count=1)[0]


def set_options(ctx: Context, task_name: str, /, **changes: Any) -> TaskOptions:
    """Change some of a task's options (keyword = TaskOptions field); validated, audited, one transaction."""
    from core.audit import record_event_in
    from storage.tasks import get_task

    unknown = set(changes) - _FIELDS
    if unknown:
        raise InputError(f"{min(unknown)}: not a task option")
    try:
        spec = get_task(ctx.db, task_name)
        task_visible(ctx, spec.id, task_name)
    except NotFound:
        raise InputError(f"task: no task named {task_name!r}", field="task") from None
    task_in_scope(ctx, spec, "change the options of")
    assert spec.id is not None
    current = store.get_task_options(ctx.db, spec.id)
    if "dependencies" in changes:
        changes["dependencies"] = [d if isinstance(d, DependencyStep) else DependencyStep.from_dict(d)
                                   for d in changes["dependencies"]]
    if "windows" in changes:
        changes["windows"] = [w.text for w in parse_windows(changes["windows"])]
    if "heartbeat_cron" in changes and changes["heartbeat_cron"]:
        changes["heartbeat_cron"] = " ".join(str(changes["heartbeat_cron"]).split())
    opts = dataclasses.replace(current, **changes)
    validate_options(ctx, opts, spec.secret_type)
    schedule_changed = (opts.heartbeat_interval_hours, opts.heartbeat_cron) != (
        current.heartbeat_interval_hours, current.heartbeat_cron)
    if schedule_changed or (opts.heartbeat_scheduled and opts.next_heartbeat_at is None):
        opts.next_heartbeat_at = first_heartbeat_at(opts, datetime.now(timezone.utc))
    detail = {k: (v if k != "dependencies" else [d.to_dict() for d in v]) for k, v in changes.items()}
    with ctx.db.write() as s:
        store.save_task_options_in(s, spec.id, opts)
        record_event_in(s, ctx, "task.options", "task", spec.name, {"id": spec.id, **detail})
    return opts
