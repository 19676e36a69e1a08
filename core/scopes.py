"""Operator scopes (beyond what peers give, like CyberArk safes): an operator limited to node subtrees sees
and acts only on assets there, in every use case, listings included."""

from __future__ import annotations

from core.audit import record_event_in
from core.context import Context
from core.errors import PermissionDenied
from storage import scopes as store


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
    """PermissionDenied when the named asset lies outside the acting operator's scope."""
    allowed = scope_of(ctx)
    if allowed is None:
        return
    from storage.inventory import get_asset

    require_in_scope(ctx, [get_asset(ctx.db, asset_name).id], f"asset {asset_name!r}")


def filter_in_scope(ctx: Context, items: list, asset_id_of) -> list:  # type: ignore[no-untyped-def, type-arg]
    """items whose asset (asset_id_of(item)) is in the acting operator's scope."""
    allowed = scope_of(ctx)
    if allowed is None:
        return items
    return [i for i in items if asset_id_of(i) in allowed]
