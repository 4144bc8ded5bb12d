"""per-user folder counts

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "folder_counts",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("folder", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "folder"),
    )
    op.execute("INSERT INTO folder_counts (user_id, folder, total) "
               "SELECT user_id, folder, count(*) FROM mailbox_entries GROUP BY user_id, folder")


def downgrade() -> None:
    op.drop_table("folder_counts")
