"""the search index can forget deleted messages: SQLite's search_keys keeps the values of
each row that the message cannot give again, so the index is built again; the word list
loses the words no message has any more

Revision ID: 0014
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

from pen_server import search_index

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        # Its index rows went with their messages already; only the word list kept the words of
        # deleted messages. It is made again from the words the tsvectors hold.
        conn.execute(sa.text("DELETE FROM search_words"))
        conn.execute(sa.text(
            "INSERT INTO search_words (word) SELECT word FROM ts_stat('SELECT doc FROM message_search') "
            f"WHERE length(word) >= {search_index.PREFIX_FROM} "
            "UNION SELECT word FROM ts_stat('SELECT addr FROM message_search') "
            f"WHERE length(word) >= {search_index.PREFIX_FROM}"))
        return
    # SQLite: the words of messages deleted before this version are still in the FTS5 index
    # (under keys no message has): it is built again, without them, in the new shape.
    search_index.drop(conn)
    search_index.create(conn)
    search_index.rebuild(conn)
    conn.execute(sa.text("INSERT INTO message_search (message_search) VALUES ('optimize')"))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":  # 0010's code writes search_keys without these columns
        conn.execute(sa.text("ALTER TABLE search_keys DROP COLUMN owners"))
        conn.execute(sa.text("ALTER TABLE search_keys DROP COLUMN meta"))
