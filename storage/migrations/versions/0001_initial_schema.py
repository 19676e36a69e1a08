"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('asset',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_asset_name'), ['name'], unique=True)

    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('object_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('object_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_hash'), ['hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_ts'), ['ts'], unique=False)

    op.create_table('change_secret_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('usernames', sa.JSON(), nullable=False),
    sa.Column('secret_strategy', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('secret_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('specific_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('specific_passphrase_enc', sa.LargeBinary(), nullable=True),
    sa.Column('ssh_key_strategy', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key_algorithm', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('become_password_enc', sa.LargeBinary(), nullable=True),
    sa.Column('interval_hours', sa.Integer(), nullable=True),
    sa.Column('cron', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('start_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('next_run_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('check_after_change', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('change_secret_task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_secret_task_name'), ['name'], unique=True)
        batch_op.create_index(batch_op.f('ix_change_secret_task_next_run_at'), ['next_run_at'], unique=False)

    op.create_table('node',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['node.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('node', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_node_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_node_path'), ['path'], unique=True)

    op.create_table('operator',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('totp_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('last_totp_step', sa.Integer(), nullable=True),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('operator', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_name'), ['name'], unique=True)

    op.create_table('vault_item',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value_enc', sa.LargeBinary(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('secret_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('passphrase_enc', sa.LargeBinary(), nullable=True),
    sa.Column('become_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('privileged', sa.Boolean(), nullable=False),
    sa.Column('can_change', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('asset_id', 'username', 'secret_type')
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_asset_id'), ['asset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_username'), ['username'], unique=False)

    op.create_table('asset_node',
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['node.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('asset_id', 'node_id')
    )
    with op.batch_alter_table('asset_node', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_asset_node_node_id'), ['node_id'], unique=False)

    op.create_table('execution',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('task_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('operator', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('snapshot', sa.JSON(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('unverified', sa.Integer(), nullable=False),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('mail_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('hostname', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.create_index('ix_execution_started', ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_execution_task_id'), ['task_id'], unique=False)

    op.create_table('host_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('key_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key_base64', sa.Text(), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('added_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('asset_id', 'key_type', 'key_base64')
    )
    with op.batch_alter_table('host_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_key_asset_id'), ['asset_id'], unique=False)

    op.create_table('task_asset',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'asset_id')
    )
    op.create_table('task_lock',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('acquired_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id')
    )
    op.create_table('task_node',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['node.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'node_id')
    )
    op.create_table('change_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('asset_id', sa.Integer(), nullable=True),
    sa.Column('task_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('asset_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('secret_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('old_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('old_passphrase_enc', sa.LargeBinary(), nullable=True),
    sa.Column('new_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('new_passphrase_enc', sa.LargeBinary(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('retry_of', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['asset_id'], ['asset.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['execution_id'], ['execution.id'], ),
    sa.ForeignKeyConstraint(['retry_of'], ['change_record.id'], ),
    sa.ForeignKeyConstraint(['task_id'], ['change_secret_task.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_record_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_change_record_execution_id'), ['execution_id'], unique=False)
        batch_op.create_index('ix_record_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_record_task_created', ['task_id', 'created_at'], unique=False)

    op.create_table('account_secret_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('passphrase_enc', sa.LargeBinary(), nullable=True),
    sa.Column('valid_from', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('replaced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['record_id'], ['change_record.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('account_secret_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_secret_history_account_id'), ['account_id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('account_secret_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_secret_history_account_id'))

    op.drop_table('account_secret_history')
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_index('ix_record_task_created')
        batch_op.drop_index('ix_record_status_created')
        batch_op.drop_index(batch_op.f('ix_change_record_execution_id'))
        batch_op.drop_index(batch_op.f('ix_change_record_account_id'))

    op.drop_table('change_record')
    op.drop_table('task_node')
    op.drop_table('task_lock')
    op.drop_table('task_asset')
    with op.batch_alter_table('host_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_host_key_asset_id'))

    op.drop_table('host_key')
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_execution_task_id'))
        batch_op.drop_index('ix_execution_started')

    op.drop_table('execution')
    with op.batch_alter_table('asset_node', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_asset_node_node_id'))

    op.drop_table('asset_node')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_username'))
        batch_op.drop_index(batch_op.f('ix_account_asset_id'))

    op.drop_table('account')
    op.drop_table('vault_item')
    with op.batch_alter_table('operator', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operator_name'))

    op.drop_table('operator')
    with op.batch_alter_table('node', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_node_path'))
        batch_op.drop_index(batch_op.f('ix_node_parent_id'))

    op.drop_table('node')
    with op.batch_alter_table('change_secret_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_secret_task_next_run_at'))
        batch_op.drop_index(batch_op.f('ix_change_secret_task_name'))

    op.drop_table('change_secret_task')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_ts'))
        batch_op.drop_index(batch_op.f('ix_audit_event_hash'))

    op.drop_table('audit_event')
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_asset_name'))

    op.drop_table('asset')
    
