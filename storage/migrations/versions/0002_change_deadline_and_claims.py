"""change deadlines, account claims and start versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A record keeps the moment its remote change has certainly ended (deadline_at) and the account version it
started from (start_version); an account names the record that holds its claim (claimed_by).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deadline_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('start_version', sa.Integer(), nullable=True))
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_column('start_version')
        batch_op.drop_column('deadline_at')
