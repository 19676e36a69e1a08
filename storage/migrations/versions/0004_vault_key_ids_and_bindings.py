"""Vault values carry their key's id and are bound to asset, user, secret type and version.

Re-seals every stored value from format 1 (table, row, field) to format 2 (storage/vault.py) in the
migration's transaction, with the master key handed in by the caller (core.context.open_database).
Adds operator_scope (the node subtrees an operator is limited to).

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import text

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from storage.reseal import reseal_all
    from storage.tables import ENCRYPTED_COLUMNS
    from storage.vault import FORMAT_V1

    op.create_table(
        "operator_scope",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["node.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["operator_id"], ["operator.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("operator_id", "node_id"),
    )
    with op.batch_alter_table("operator_scope", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_scope_node_id"), ["node_id"], unique=False)

    conn = op.get_bind()
    has_v1 = False
    for table, (_pk, columns) in ENCRYPTED_COLUMNS.items():
        cond = " OR ".join(f"substr({c}, 1, 1) = :v1" for c in columns)
        if conn.execute(text(f"SELECT 1 FROM {table} WHERE {cond} LIMIT 1"), {"v1": FORMAT_V1}).first():
            has_v1 = True
            break
    if not has_v1:
        return
    vault = context.config.attributes.get("vault")
    if vault is None:
        raise RuntimeError("migration 0004 re-seals the vault and needs the master key: open the database "
                           "with keyturn (core.context.open_database), not with alembic alone")
    reseal_all(conn, vault, vault)


def downgrade() -> None:
    raise RuntimeError("0004 cannot be undone: format 2 vault values cannot be turned back into format 1 safely")
