"""workers: executions handed to `keyturn worker` processes, split into work units taken under a lease

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

New tables, and an index for following a run's records. Chained after 0006 (database options on assets), rechained when the databases branch merged main.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('work_run',
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('lock_holder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['execution_id'], ['execution.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('execution_id')
    )
    op.create_table('work_unit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=True),
    sa.Column('asset_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('record_ids', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['execution_id'], ['execution.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('work_unit', schema=None) as batch_op:
        batch_op.create_index('ix_work_unit_status', ['status', 'lease_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_work_unit_execution_id'), ['execution_id'], unique=False)
    # Followers of a run read the records settled since their last look, every half second.
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.create_index('ix_record_execution_finished', ['execution_id', 'finished_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_index('ix_record_execution_finished')
    with op.batch_alter_table('work_unit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_work_unit_execution_id'))
        batch_op.drop_index('ix_work_unit_status')
    op.drop_table('work_unit')
    op.drop_table('work_run')
