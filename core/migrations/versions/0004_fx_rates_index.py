"""fx_rates: an index on (currency, valid_from) for the rate lookup of each converted row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 20:40:00
"""

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('fx_rates', schema=None) as batch_op:
        batch_op.create_index('ix_fx_rates_currency', ['currency', 'valid_from'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fx_rates', schema=None) as batch_op:
        batch_op.drop_index('ix_fx_rates_currency')
