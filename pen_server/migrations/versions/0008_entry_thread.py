"""each copy of a message knows its thread, and an index finds a folder's threads

Revision ID: 0008
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"  # chained after 0007 (fleet) when the branches met
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox_entries") as batch:
        batch.add_column(sa.Column("thread_id", sa.String(length=32), nullable=True))
    op.execute("UPDATE mailbox_entries SET thread_id = (SELECT thread_id FROM messages "
               "WHERE messages.id = mailbox_entries.message_id)")
    with op.batch_alter_table("mailbox_entries") as batch:
        batch.alter_column("thread_id", existing_type=sa.String(length=32), nullable=False)
    op.create_index("ix_entry_thread", "mailbox_entries", ["user_id", "folder", "thread_id", "sent_at", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_entry_thread", table_name="mailbox_entries")
    with op.batch_alter_table("mailbox_entries") as batch:
        batch.drop_column("thread_id")
