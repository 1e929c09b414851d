"""alert states: one row per alert rule and segment cell; job runs record what their alerts step did

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 04:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_states',
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('segment', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('occurrence', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('firings', sa.Integer(), nullable=False),
    sa.Column('last_notified_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_value', sa.Float(), nullable=True),
    sa.Column('last_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('last_period', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('evaluated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('rule', 'segment')
    )
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_column('alerts')

    op.drop_table('alert_states')
