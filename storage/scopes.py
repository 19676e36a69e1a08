"""Operator scopes: the node subtrees an operator is limited to (no row: not limited)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from storage.db import Database
from storage.inventory import NotFound, node_ids_below, normalize_node_path
from storage.tables import AssetNode, Node, Operator, OperatorScope


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
