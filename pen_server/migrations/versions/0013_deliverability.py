"""deliverability: the blocklist watch's state (one row) and its current listings

Revision ID: 0013
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"  # chained after 0011 (after sending) when the branches met
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocklist_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("asked", sa.JSON(), nullable=True),
        sa.Column("unanswered", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "blocklist_listings",
        sa.Column("zone", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("answer", sa.String(length=255), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "subject"),
    )


def downgrade() -> None:
    op.drop_table("blocklist_listings")
    op.drop_table("blocklist_state")
