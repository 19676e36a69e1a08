"""Operator scopes: the node subtrees an operator is limited to (no row: not limited)."""

from __future__ import annotations

from sqlalchemy import or_
from sqlmodel import Session, col, select

from storage.db import Database
from storage.errors import NotFound
from storage.inventory import node_ids_below, normalize_node_path
from storage.tables import Asset, AssetNode, ChangeSecretTask, Node, Operator, OperatorScope, TaskAsset, TaskNode


def _operator_id(session: Session, name: str) -> int:
    op = session.exec(select(Operator).where(Operator.name == name)).first()
    if op is None or op.id is None:
        raise NotFound(f"no operator {name!r}")
    return op.id


def set_scope(session: Session, operator: str, node_paths: list[str]) -> list[str]:
    """Limit operator to these node subtrees (an empty list clears the limit); returns the normalized paths."""
    op_id = _operator_id(session, operator)
    paths = [normalize_node_path(p) for p in node_paths]
    nodes = {n.path: n.id for n in session.exec(select(Node).where(col(Node.path).in_(paths))).all()}
    missing = [p for p in paths if p not in nodes]
    if missing:
        raise NotFound(f"no node {', '.join(repr(m) for m in missing)}")
    for row in session.exec(select(OperatorScope).where(OperatorScope.operator_id == op_id)).all():
        session.delete(row)
    session.flush()
    for node_id in dict.fromkeys(nodes[p] for p in paths):
        session.add(OperatorScope(operator_id=op_id, node_id=node_id))
    session.flush()
    return paths


def scope_paths(db: Database, operator: str) -> list[str]:
    """The node paths operator is limited to ([] = not limited)."""
    with db.read() as s:
        rows = s.exec(select(Node.path).join(OperatorScope, col(OperatorScope.node_id) == Node.id)
                      .join(Operator, col(Operator.id) == OperatorScope.operator_id)
                      .where(Operator.name == operator).order_by(Node.path)).all()
        return list(rows)


def scope_node_ids(db: Database, operator: str) -> frozenset[int] | None:
    """Ids of the nodes in operator's scope, subtrees expanded (what storage queries take), or None: no limit."""
    with db.read() as s:
        node_ids = s.exec(select(OperatorScope.node_id).join(Operator, col(Operator.id) == OperatorScope.operator_id)
                          .where(Operator.name == operator)).all()
        return frozenset(node_ids_below(s, node_ids)) if node_ids else None


def visible_asset_ids(db: Database, operator: str) -> set[int] | None:
    """Ids of the assets in operator's scope, or None when operator is not limited."""
    with db.read() as s:
        node_ids = s.exec(select(OperatorScope.node_id).join(Operator, col(Operator.id) == OperatorScope.operator_id)
                          .where(Operator.name == operator)).all()
        if not node_ids:
            return None
        below = node_ids_below(s, node_ids)
        return set(s.exec(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(below))).all())


def visible_task_ids(db: Database, operator: str) -> frozenset[int] | None:
    """Ids of the tasks operator may see, or None when operator is not limited.

    A task is visible when it names an asset in the scope, names a node at or below a scope node, or names a
    node whose subtree holds an asset in the scope (a task on /dc1 changes the /prod assets filed there too).
    """
    with db.read() as s:
        top = s.exec(select(OperatorScope.node_id).join(Operator, col(Operator.id) == OperatorScope.operator_id)
                     .where(Operator.name == operator)).all()
        if not top:
            return None
        below = node_ids_below(s, top)
        in_scope = select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(below))
        # Nodes holding an asset of the scope, and every node above them: their subtrees reach into the scope.
        holding = s.exec(select(Node.path).where(col(Node.id).in_(
            select(AssetNode.node_id).where(col(AssetNode.asset_id).in_(in_scope))))).all()
        above = {p[:i] for p in holding for i in range(1, len(p) + 1) if i == len(p) or p[i] == "/"} - {""}
        reach = set(below)
        if above:
            reach.update(s.exec(select(Node.id).where(col(Node.path).in_(sorted(above)))).all())
        by_node = select(TaskNode.task_id).where(col(TaskNode.node_id).in_(reach))
        by_asset = select(TaskAsset.task_id).where(col(TaskAsset.asset_id).in_(in_scope))
        return frozenset(s.exec(select(ChangeSecretTask.id).where(
            or_(col(ChangeSecretTask.id).in_(by_node), col(ChangeSecretTask.id).in_(by_asset)))).all())


def targets_outside(db: Database, operator: str, node_paths: list[str], asset_names: list[str], *,
                    missing: bool = False) -> tuple[list[str], list[str]]:
    """(node paths, asset names) among these task targets that lie outside operator's scope ([], [] when not limited).

    A node is inside when it is a scope node or below one (then every asset it can ever hold is inside); an
    asset when it is filed in such a node. Names that do not exist are left to the task's own validation, or
    (missing=True) listed with the assets outside, in the order given.
    """
    with db.read() as s:
        top = s.exec(select(OperatorScope.node_id).join(Operator, col(Operator.id) == OperatorScope.operator_id)
                     .where(Operator.name == operator)).all()
        if not top:
            return [], []
        below = node_ids_below(s, top)
        paths = []
        for p in node_paths:
            try:
                paths.append(normalize_node_path(p))
            except ValueError:
                continue
        nodes = dict(s.exec(select(Node.path, Node.id).where(col(Node.path).in_(paths))).all()) if paths else {}
        nodes_out = [p for p in dict.fromkeys(paths) if p in nodes and nodes[p] not in below]
        names = list(dict.fromkeys(asset_names))
        assets = dict(s.exec(select(Asset.name, Asset.id).where(col(Asset.name).in_(names))).all()) if names else {}
        inside = set(s.exec(select(AssetNode.asset_id).where(col(AssetNode.asset_id).in_(list(assets.values())),
                                                              col(AssetNode.node_id).in_(below))).all()) if assets else set()
        assets_out = [n for n in names if (n in assets or missing) and assets.get(n) not in inside]
        return nodes_out, assets_out


def audit_visible(operator: str, scope: frozenset[int], task_ids: frozenset[int]):  # type: ignore[no-untyped-def]
    """A where-clause on audit_event: what an operator limited to scope (node ids, subtrees expanded) may read.

    Their own events, events about themselves, and events whose object is an asset, account, change record,
    execution or task in the scope (task_ids: storage.scopes.visible_task_ids). Events about objects that no
    longer exist (a removed asset) cannot be placed and are not shown. One SQL clause, so pages and counts stay
    exact on both databases."""
    from sqlalchemy import String, and_, cast

    from storage.inventory import in_scope
    from storage.tables import Account, AuditEvent, ChangeRecord

    kind, oid = col(AuditEvent.object_type), col(AuditEvent.object_id)
    asset_names = select(Asset.name).where(in_scope(Asset.id, scope))
    account_ids = select(cast(Account.id, String)).where(in_scope(Account.asset_id, scope))
    account_keys = select(Account.username + "@" + Asset.name).join(Asset, col(Asset.id) == Account.asset_id) \
        .where(in_scope(Asset.id, scope))
    record_ids = select(cast(ChangeRecord.id, String)).where(in_scope(ChangeRecord.asset_id, scope))
    execution_ids = select(cast(ChangeRecord.execution_id, String)).where(in_scope(ChangeRecord.asset_id, scope))
    task_names = select(ChangeSecretTask.name).where(col(ChangeSecretTask.id).in_(sorted(task_ids)))
    return or_(
        col(AuditEvent.actor) == operator,
        and_(kind == "operator", oid == operator),
        and_(kind == "asset", oid.in_(asset_names)),
        and_(kind == "account", or_(oid.in_(account_ids), oid.in_(account_keys))),
        and_(kind == "change_record", oid.in_(record_ids)),
        and_(kind == "execution", oid.in_(execution_ids)),
        and_(kind == "task", oid.in_(task_names)),
    )
