"""attachment count kept with each message

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("attachment_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE messages SET attachment_count = (SELECT count(*) FROM attachments "
               "WHERE attachments.message_id = messages.id)")


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("attachment_count")
