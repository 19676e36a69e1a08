"""Repository for change-secret tasks: rows <-> TaskSpec, asset and node links, secrets sealed in the vault.

Business rules (validation, when a task is next due) live in core/tasks.py; this module only stores.
User-fixable problems raise TaskInputError (an InputError naming its field) and a missing task NotFound, both
from the one error tree (storage.errors, re-exported by core.errors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlmodel import Session, col, delete, select

from storage.db import Database
from storage.errors import InputError, NotFound
from storage.inventory import normalize_node_path
from storage.tables import Asset, ChangeSecretTask, Node, TaskAsset, TaskNode, utcnow
from storage.types import HostParams, PasswordRules, TaskSpec

# TaskSpec field -> encrypted column of ChangeSecretTask.
SECRET_COLUMNS: dict[str, str] = {
    "specific_secret": "specific_secret_enc",
    "specific_passphrase": "specific_passphrase_enc",
    "become_password": "become_password_enc",
}


# Called inside the write transaction with the task's id, so an audit event commits (or not) with the change.
AuditHook = Callable[[Session, int], None]


class TaskInputError(InputError):
    """A task refers to something that does not exist, or its name is taken; the message names the field."""


def _get_row(session: Session, name: str) -> ChangeSecretTask:
    row = session.exec(select(ChangeSecretTask).where(ChangeSecretTask.name == name)).first()
    if row is None:
        raise NotFound(f"no task named {name!r}")
    return row


def _links(session: Session, task_ids: list[int]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Asset names and node paths of each task, two queries for any number of tasks."""
    assets: dict[int, list[str]] = {i: [] for i in task_ids}
    nodes: dict[int, list[str]] = {i: [] for i in task_ids}
    if not task_ids:
        return assets, nodes
    for tid, name in session.exec(select(TaskAsset.task_id, Asset.name).join(Asset, Asset.id == TaskAsset.asset_id)
                                  .where(col(TaskAsset.task_id).in_(task_ids)).order_by(Asset.name)).all():
        assets[tid].append(name)
    for tid, path in session.exec(select(TaskNode.task_id, Node.path).join(Node, Node.id == TaskNode.node_id)
                                  .where(col(TaskNode.task_id).in_(task_ids)).order_by(Node.path)).all():
        nodes[tid].append(path)
    return assets, nodes


def _to_spec(row: ChangeSecretTask, assets: list[str], nodes: list[str], db: Database | None) -> TaskSpec:
    """Row -> TaskSpec; secrets are decrypted only when db is given."""
    spec = TaskSpec(
        name=row.name, usernames=list(row.usernames), assets=list(assets), nodes=list(nodes),
        secret_strategy=row.secret_strategy, secret_type=row.secret_type, ssh_key_strategy=row.ssh_key_strategy,
        key_algorithm=row.key_algorithm, rules=PasswordRules.from_dict(row.rules), params=HostParams.from_dict(row.params),
        interval_hours=row.interval_hours, cron=row.cron, start_at=row.start_at,
        check_after_change=row.check_after_change, active=row.active, description=row.description,
        recipients=list(row.recipients), id=row.id, next_run_at=row.next_run_at, created_at=row.created_at,
        updated_at=row.updated_at,
    )
    if db is not None:
        for attr, column in SECRET_COLUMNS.items():
            setattr(spec, attr, db.unseal(row, column))
    return spec


def secrets_set(db: Database, name: str) -> dict[str, bool]:
    """Which secrets the task holds (TaskSpec field -> bool), without decrypting them."""
    with db.read() as s:
        row = _get_row(s, name)
        return {attr: getattr(row, column) is not None for attr, column in SECRET_COLUMNS.items()}


def _resolve_assets(session: Session, names: Iterable[str]) -> list[int]:
    names = list(dict.fromkeys(names))
    if not names:
        return []
    found = dict(session.exec(select(Asset.name, Asset.id).where(col(Asset.name).in_(names))).all())
    missing = [n for n in names if n not in found]
    if missing:
        raise TaskInputError(f"assets: no asset named {', '.join(repr(m) for m in missing)}", field="assets")
    return [found[n] for n in names]


def _resolve_nodes(session: Session, paths: Iterable[str]) -> list[int]:
    wanted: list[str] = []
    for p in paths:
        try:
            wanted.append(normalize_node_path(p))
        except ValueError:
            raise TaskInputError(f"nodes: {p!r} is not a node path such as /prod/db", field="nodes") from None
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return []
    found = dict(session.exec(select(Node.path, Node.id).where(col(Node.path).in_(wanted))).all())
    missing = [p for p in wanted if p not in found]
    if missing:
        raise TaskInputError(f"nodes: no node {', '.join(repr(m) for m in missing)}", field="nodes")
    return [found[p] for p in wanted]


def save_task(db: Database, spec: TaskSpec, *, create: bool, audit: AuditHook | None = None) -> TaskSpec:
    """Insert (create=True) or update the task in one transaction; returns the stored spec (secrets as given).

    An edit finds the row by spec.id when set (so a rename works), else by name.
    """
    with db.write() as s:
        clash = s.exec(select(ChangeSecretTask).where(ChangeSecretTask.name == spec.name)).first()
        if create:
            if clash is not None:
                raise TaskInputError(f"name: a task named {spec.name!r} exists", field="name")
            row = ChangeSecretTask(name=spec.name)
            s.add(row)
            s.flush()
        else:
            row = s.get(ChangeSecretTask, spec.id) if spec.id is not None else clash
            if row is None:
                raise NotFound(f"no task named {spec.name!r}")
            if clash is not None and clash.id != row.id:
                raise TaskInputError(f"name: a task named {spec.name!r} exists", field="name")
        asset_ids = _resolve_assets(s, spec.assets)
        node_ids = _resolve_nodes(s, spec.nodes)
        row.name = spec.name
        row.description = spec.description
        row.usernames = list(spec.usernames)
        row.secret_strategy = spec.secret_strategy
        row.secret_type = spec.secret_type
        row.ssh_key_strategy = spec.ssh_key_strategy
        row.key_algorithm = spec.key_algorithm
        row.rules = spec.rules.to_dict()
        row.params = spec.params.to_dict()
        row.interval_hours = spec.interval_hours
        row.cron = spec.cron or None
        row.start_at = spec.start_at
        row.next_run_at = spec.next_run_at
        row.check_after_change = spec.check_after_change
        row.active = spec.active
        row.recipients = list(spec.recipients)
        row.updated_at = utcnow()
        for attr, column in SECRET_COLUMNS.items():
            db.seal(row, column, getattr(spec, attr))
        s.add(row)
        s.exec(delete(TaskAsset).where(col(TaskAsset.task_id) == row.id))
        s.exec(delete(TaskNode).where(col(TaskNode.task_id) == row.id))
        s.flush()
        for aid in asset_ids:
            s.add(TaskAsset(task_id=row.id, asset_id=aid))
        for nid in node_ids:
            s.add(TaskNode(task_id=row.id, node_id=nid))
        s.flush()
        if audit is not None:
            audit(s, row.id)
        assets, nodes = _links(s, [row.id])
        saved = _to_spec(row, assets[row.id], nodes[row.id], None)
    for attr in SECRET_COLUMNS:
        setattr(saved, attr, getattr(spec, attr))
    return saved


def get_task(db: Database, name: str) -> TaskSpec:
    """One task by name with its secrets decrypted (for the engine and edits; never print them)."""
    with db.read() as s:
        row = _get_row(s, name)
        assets, nodes = _links(s, [row.id])
        return _to_spec(row, assets[row.id], nodes[row.id], db)


def get_task_by_id(db: Database, task_id: int) -> TaskSpec:
    """One task by id with its secrets decrypted."""
    with db.read() as s:
        row = s.get(ChangeSecretTask, task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        assets, nodes = _links(s, [row.id])
        return _to_spec(row, assets[row.id], nodes[row.id], db)


def list_tasks(db: Database) -> list[TaskSpec]:
    """Every task sorted by name, secrets left None (nothing is decrypted)."""
    with db.read() as s:
        rows = s.exec(select(ChangeSecretTask).order_by(ChangeSecretTask.name)).all()
        assets, nodes = _links(s, [r.id for r in rows])
        return [_to_spec(r, assets[r.id], nodes[r.id], None) for r in rows]


def delete_task(db: Database, name: str, audit: AuditHook | None = None) -> int:
    """Delete a task (its links and lock go with it; executions and records keep the task name). Returns its id."""
    with db.write() as s:
        row = _get_row(s, name)
        task_id = row.id
        # Links cascade in SQL, but deleting them here keeps the session from holding stale link rows.
        s.exec(delete(TaskAsset).where(col(TaskAsset.task_id) == task_id))
        s.exec(delete(TaskNode).where(col(TaskNode.task_id) == task_id))
        s.delete(row)
        if audit is not None:
            audit(s, task_id)
    return task_id


def copy_task(db: Database, name: str, new_name: str) -> TaskSpec:
    """A new task with every setting and secret of name (next run time copied as is)."""
    spec = get_task(db, name)
    spec.name, spec.id, spec.created_at, spec.updated_at = new_name, None, None, None
    return save_task(db, spec, create=True)


def set_task_active(db: Database, name: str, active: bool, next_run_at: datetime | None = None,
                    audit: AuditHook | None = None) -> None:
    """Mark a task active or inactive and store its next run time (None: not scheduled)."""
    with db.write() as s:
        row = _get_row(s, name)
        row.active = active
        row.next_run_at = next_run_at
        row.updated_at = utcnow()
        s.add(row)
        if audit is not None:
            audit(s, row.id)


def set_next_run(db: Database, task_id: int, when: datetime | None) -> None:
    """Store when the task is next due (the scheduler calls this after starting a run)."""
    with db.write() as s:
        row = s.get(ChangeSecretTask, task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        row.next_run_at = when
        s.add(row)
