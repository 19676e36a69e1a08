"""Checks made when a run starts, not only when its task was saved: a task stored long ago (before the
allow-list, or edited in the database) must not run a program the protected config file does not allow, and
an operator limited to node subtrees must not change accounts outside them through a task.

Scope rule for runs: **refuse**. A run whose accounts lie partly outside the acting operator's scope is not
started at all (nothing is pushed, no record is written); the message counts the assets outside without naming
them (outside the scope an asset does not exist for the operator), and a task naming a node or asset outside
the scope is refused even when nothing is filed there yet (core.scopes.task_in_scope). Quietly
leaving them out would make the same task do different things depending on who pressed run, and the task's
own report would claim a run that skipped part of it. Scheduled runs act as keyturn itself (no scope).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.context import Context
from core.errors import InputError, PermissionDenied
from storage.types import TaskSpec

def check_programs(ctx: Context, spec: TaskSpec) -> None:
    """InputError naming the task and field when a program its parameters name (chpasswd, a created user's
    shell, a sudo command) is not allowed now."""
    from core.tasks import check_program_paths

    try:
        check_program_paths(spec.params, ctx.settings)
    except InputError as exc:
        fix = ("--chpasswd-path chpasswd" if exc.field == "chpasswd path"
               else f"--param {'shell' if exc.field == 'shell' else 'sudo'}=...")
        raise InputError(f"task {spec.name}: {exc}; nothing was run. Fix it with `keyturn task edit {spec.name} {fix}`",
                         field=exc.field) from None


def check_scope(ctx: Context, spec: TaskSpec, assets: Iterable[tuple[int, str]]) -> None:
    """PermissionDenied when any (asset id, name) the run would touch lies outside the acting operator's scope,
    or when the task names a node or asset outside it (core.scopes.task_in_scope); NotFound for a task the
    operator may not see at all. Assets outside the scope are counted, never named."""
    from core.scopes import scope_of, task_in_scope, task_visible
    from storage.scopes import scope_paths

    allowed = scope_of(ctx)
    if allowed is None:
        return
    task_visible(ctx, spec.id, spec.name)
    outside = {asset_id for asset_id, _name in assets if asset_id not in allowed}
    if outside:
        n = len(outside)
        raise PermissionDenied(
            f"task {spec.name}: {n} asset{'s' if n != 1 else ''} of this run lie{'' if n != 1 else 's'} outside your "
            f"scope ({', '.join(scope_paths(ctx.db, ctx.operator or ''))}); nothing was run. An operator whose scope "
            "covers them (or the schedule) runs it")
    task_in_scope(ctx, spec, "run")
    _dependency_hosts_in_scope(ctx, spec)


def _dependency_hosts_in_scope(ctx: Context, spec: TaskSpec) -> None:
    # A dependency step runs its command on the asset it names (run on): that host is touched too.
    from core.scopes import asset_visible
    from storage.drift import get_task_options

    if spec.id is None:
        return
    hosts = {d.run_on for d in get_task_options(ctx.db, spec.id).dependencies if d.run_on and d.run_on != "*"}
    outside = [h for h in hosts if not asset_visible(ctx, h)]
    if outside:
        n = len(outside)
        raise PermissionDenied(f"task {spec.name}: its dependency steps run on {n} asset{'s' if n != 1 else ''} "
                               "outside your scope; nothing was run. An operator whose scope covers them (or the "
                               "schedule) runs it")


def check_run(ctx: Context, spec: TaskSpec, assets: Iterable[tuple[int, str]]) -> None:
    """Everything a run must pass before its first record is written."""
    check_programs(ctx, spec)
    check_scope(ctx, spec, assets)
