"""after sending: withdrawn and opened copies, end dates, a package's default end date, and
the audit trail (its rows and the head of its hash chain)

Revision ID: 0011
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

from pen_server.models import UTCDateTime

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox_entries") as batch:
        batch.add_column(sa.Column("revoked_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("opened_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("packages") as batch:
        batch.add_column(sa.Column("expire_days", sa.Integer(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("attachment_id", sa.String(length=32), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
    )
    op.create_index("ix_audit_message", "audit_log", ["message_id", "id"])
    op.create_index("ix_audit_actor", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_recipient", "audit_log", ["recipient", "id"])
    op.create_index("ix_audit_at", "audit_log", ["at"])
    # Its one row is made by the first append (a copy by migrate-to brings its own).
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("expire_days")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("mailbox_entries") as batch:
        batch.drop_column("opened_at")
        batch.drop_column("revoked_at")
