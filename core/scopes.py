"""Operator scopes (beyond what peers give, like CyberArk safes): an operator limited to node subtrees sees
and acts only on assets there, in every use case, listings included."""

from __future__ import annotations

from core.audit import record_event_in
from core.context import Context
from core.errors import PermissionDenied
from storage import scopes as store
from storage.types import TaskSpec


def set_scope(ctx: Context, operator: str, nodes: list[str]) -> list[str]:
    """Limit operator to nodes (empty: no limit); audited. Operator admin: a TOTP step-up first."""
    from core.operators import require_admin

    require_admin(ctx)
    with ctx.db.write() as s:
        paths = store.set_scope(s, operator, nodes)
        record_event_in(s, ctx, "operator.scope", "operator", operator, {"nodes": paths})
    return paths


def scope_filter(ctx: Context) -> frozenset[int] | None:
    """The acting operator's scope as storage queries take it (node ids, subtrees expanded); None: no limit."""
    if not ctx.operator:
        return None
    return store.scope_node_ids(ctx.db, ctx.operator)


def scope_of(ctx: Context) -> set[int] | None:
    """Asset ids the acting operator may see and act on; None when not limited (or keyturn itself acts)."""
    if not ctx.operator:
        return None
    return store.visible_asset_ids(ctx.db, ctx.operator)


def require_in_scope(ctx: Context, asset_ids: set[int] | list[int], what: str) -> None:
    """PermissionDenied when any of asset_ids lies outside the acting operator's scope."""
    allowed = scope_of(ctx)
    if allowed is None:
        return
    outside = set(asset_ids) - allowed
    if outside:
        raise PermissionDenied(f"{what}: outside your scope ({', '.join(store.scope_paths(ctx.db, ctx.operator or ''))})")


def asset_in_scope(ctx: Context, asset_name: str) -> None:
    """NotFound, worded as for a missing asset, when the named asset lies outside the acting operator's scope.

    Outside the scope an asset does not exist for the operator: no command confirms that it does."""
    allowed = scope_of(ctx)
    if allowed is None:
        return
    from storage.errors import NotFound
    from storage.inventory import get_asset

    try:
        asset_id = get_asset(ctx.db, asset_name).id
    except NotFound:
        asset_id = None
    if asset_id not in allowed:
        raise NotFound(f"no asset named {asset_name!r}")


def asset_visible(ctx: Context, asset_name: str) -> bool:
    """Whether the acting operator's scope holds the named asset (an asset that does not exist: False)."""
    try:
        asset_in_scope(ctx, asset_name)
    except LookupError:
        return False
    return True


def record_in_scope(ctx: Context, record_id: int) -> None:
    """NotFound, worded as for a missing record, when the change record's asset lies outside the scope."""
    allowed = scope_of(ctx)
    if allowed is None:
        return
    from storage.errors import NotFound
    from storage.executions import get_record

    r = get_record(ctx.db, record_id)  # NotFound for a record that does not exist
    if r.asset_id not in allowed:
        raise NotFound(f"no change record with id {record_id}")


def visible_tasks(ctx: Context) -> frozenset[int] | None:
    """Ids of the tasks the acting operator may see (list, show, preview); None: no limit."""
    if not ctx.operator:
        return None
    return store.visible_task_ids(ctx.db, ctx.operator)


def task_visible(ctx: Context, task_id: int | None, name: str) -> None:
    """NotFound, worded as for a missing task, when the acting operator may not see this task."""
    visible = visible_tasks(ctx)
    if visible is not None and task_id not in visible:
        from storage.errors import NotFound

        raise NotFound(f"no task named {name!r}")


def task_in_scope(ctx: Context, spec: TaskSpec, verb: str, *, typed: bool = False) -> None:
    """Refuse to create, change or run a task unless every node and asset it names lies in the acting
    operator's scope (then every asset it can ever touch does, whatever is filed there later).

    typed: spec holds what the person typed (create, edit): an asset outside reads as missing, as validation
    words it (InputError on the assets field). For a stored task they are counted, never named. A node outside
    is named (the node tree is no secret)."""
    if not ctx.operator:
        return
    nodes_out, assets_out = store.targets_outside(ctx.db, ctx.operator, list(spec.nodes), list(spec.assets),
                                                  missing=typed)
    if assets_out and typed:  # missing ones too, so the answer is the same for both (and comes before validation)
        from storage.tasks import TaskInputError

        raise TaskInputError(f"assets: no asset named {', '.join(repr(a) for a in assets_out)}", field="assets")
    if nodes_out or assets_out:
        parts = [f"node {', '.join(nodes_out)}"] if nodes_out else []
        if assets_out:
            n = len(assets_out)
            parts.append(f"{n} asset{'s' if n != 1 else ''} it names")
        raise PermissionDenied(f"task {spec.name}: cannot {verb} it: {' and '.join(parts)} outside your scope "
                               f"({', '.join(store.scope_paths(ctx.db, ctx.operator))}); an operator whose scope "
                               "covers every node and asset of the task may")


def filter_in_scope(ctx: Context, items: list, asset_id_of) -> list:  # type: ignore[no-untyped-def, type-arg]
    """items whose asset (asset_id_of(item)) is in the acting operator's scope."""
    allowed = scope_of(ctx)
    if allowed is None:
        return items
    return [i for i in items if asset_id_of(i) in allowed]
