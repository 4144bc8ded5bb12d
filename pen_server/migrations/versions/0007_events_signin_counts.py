"""events with ids for GET /events, and the sign-in limiter's counts, shared by every process

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from pen_server.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_user", "events", ["user_id", "id"])
    op.create_index("ix_event_created", "events", ["created_at"])
    op.create_table(
        "signin_counts",
        sa.Column("key_hash", sa.String(length=64), primary_key=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("pending_at", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_signin_last", "signin_counts", ["last_at"])


def downgrade() -> None:
    op.drop_table("signin_counts")
    op.drop_table("events")
