"""Database connection options on assets: database name, TLS mode and CA file, connect/command timeouts, gateway.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("database", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("tls", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("ca_file", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("connect_timeout", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("command_timeout", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("gateway_asset_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        for name in ("gateway_asset_id", "command_timeout", "connect_timeout", "ca_file", "tls", "database"):
            batch_op.drop_column(name)
