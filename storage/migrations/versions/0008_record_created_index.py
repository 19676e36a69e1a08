"""records: an index on change_record.created_at, so the newest page of records is read from the index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

The Records mode lists records newest first; without this index every page sorted the whole table (a quarter
second at a million records, more for later pages).
"""

from __future__ import annotations

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.create_index('ix_record_created', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_index('ix_record_created')
