"""an index on a message's sender and time, for the hourly sending limit

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_message_sender_sent", "messages", ["sender_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_message_sender_sent", table_name="messages")
