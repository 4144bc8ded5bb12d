"""a subject policy per membership package

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.add_column(sa.Column("subject_policy", sa.String(length=8), nullable=False, server_default="keep"))


def downgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("subject_policy")
