"""records: an index on change_record (task_name, created_at), so Records filtered by task reads one task's records

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The Records mode's task filter matches the task name a record keeps (its task may since have been renamed or
deleted). Without an index on it, counting one task's records scanned the whole table (0.2-1.3 s at a million
records) and its first page walked ix_record_created until it had found 100 of them; with it both read only
that task's entries, already newest first.
"""

from __future__ import annotations

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.create_index('ix_record_task_name_created', ['task_name', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_index('ix_record_task_name_created')
