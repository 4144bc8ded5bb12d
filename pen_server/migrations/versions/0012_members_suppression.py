"""members' lifecycle (disabled and removed accounts) and the suppression list

Revision ID: 0012
Revises: 0011

Down again, a disabled account's password hash is replaced by one that no password matches
(the older code knows no disabled accounts, and must not let it sign in; `pen-server user
passwd` gives it a password again), and a `suppressed` notification becomes `failed` with
its sentence.
"""
import sqlalchemy as sa
from alembic import op

from pen_server.models import UTCDateTime

revision = "0012"
down_revision = "0011"  # chained after 0011 (after sending) when the branches met
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, also on SQLite (3.35 and later drop a column in place): a batch
    # copy of `users` would drop the table that messages refer to.
    op.add_column("users", sa.Column("disabled_at", UTCDateTime(), nullable=True))
    op.add_column("users", sa.Column("removed_at", UTCDateTime(), nullable=True))
    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("notification_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("email"),
    )


def downgrade() -> None:
    op.execute("UPDATE notifications SET status = 'failed' WHERE status = 'suppressed'")
    op.execute("UPDATE users SET password_hash = '!disabled' WHERE disabled_at IS NOT NULL")
    op.drop_table("suppressions")
    op.drop_column("users", "removed_at")
    op.drop_column("users", "disabled_at")
