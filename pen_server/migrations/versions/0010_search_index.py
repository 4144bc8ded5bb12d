"""the full-text index behind search, built for the messages there are; the search slots;
an index for is:unread and one for has:attachment

Revision ID: 0010
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

from pen_server import search_index

revision = "0010"
down_revision = "0013"  # chained after 0013 (deliverability) when the branches met
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_slots",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "slot"),
    )
    op.create_index("ix_entry_unread", "mailbox_entries", ["user_id", "folder", "unread", "sent_at", "message_id"])
    op.create_index("ix_message_attachments", "messages", ["id"], postgresql_where=sa.text("attachment_count > 0"),
                    sqlite_where=sa.text("attachment_count > 0"))
    conn = op.get_bind()
    search_index.create(conn)
    search_index.rebuild(conn)  # every message there is, oldest first, in batches
    if conn.dialect.name == "sqlite":
        conn.execute(sa.text("INSERT INTO message_search (message_search) VALUES ('optimize')"))


def downgrade() -> None:
    search_index.drop(op.get_bind())
    op.drop_index("ix_message_attachments", table_name="messages")
    op.drop_index("ix_entry_unread", table_name="mailbox_entries")
    op.drop_table("search_slots")
