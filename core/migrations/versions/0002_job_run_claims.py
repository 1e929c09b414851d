"""job runs: occurrences claimed under a unique key, leases, counts

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurrence', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('rows_synced', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('results_saved', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_job_runs_job_occurrence', ['job', 'occurrence'])


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_job_runs_job_occurrence', type_='unique')
        batch_op.drop_column('results_saved')
        batch_op.drop_column('rows_synced')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lease_owner')
        batch_op.drop_column('due_at')
        batch_op.drop_column('occurrence')
