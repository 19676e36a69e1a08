"""drift: heartbeat results, task options (windows, retries, dependencies, hand-over), record flags, age keys

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('operator_age_key',
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operator.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('operator_id')
    )
    op.create_table('task_option',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('heartbeat_interval_hours', sa.Integer(), nullable=True),
    sa.Column('heartbeat_cron', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('next_heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('windows', sa.JSON(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('retry_delay_minutes', sa.Integer(), nullable=False),
    sa.Column('send_secrets', sa.Boolean(), nullable=False),
    sa.Column('reconcile_drift', sa.Boolean(), nullable=False),
    sa.Column('dependencies', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id')
    )
    op.create_table('heartbeat_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('asset_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account_version', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('heartbeat_result', schema=None) as batch_op:
        batch_op.create_index('ix_heartbeat_account_checked', ['account_id', 'checked_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_heartbeat_result_checked_at'), ['checked_at'], unique=False)

    op.create_table('record_flag',
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('ignored', sa.Boolean(), nullable=False),
    sa.Column('ignored_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ignored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('dependency_status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dependency_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['change_record.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('record_id')
    )


def downgrade() -> None:
    op.drop_table('record_flag')
    with op.batch_alter_table('heartbeat_result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_heartbeat_result_checked_at'))
        batch_op.drop_index('ix_heartbeat_account_checked')

    op.drop_table('heartbeat_result')
    op.drop_table('task_option')
    op.drop_table('operator_age_key')
