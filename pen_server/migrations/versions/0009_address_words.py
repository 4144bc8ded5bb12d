"""words for address completion: the people on each user's messages and the PEN's members

Revision ID: 0009
Revises: 0008
"""
import json

import sqlalchemy as sa
from alembic import op

from pen_server.addresses import MEMBER_ROLES, people_of_copy, words

revision = "0009"
down_revision = "0008"  # chained after 0008 (threads) when the branches met
branch_labels = None
depends_on = None

_WORD = sa.String(length=100).with_variant(sa.String(length=100, collation="C"), "postgresql")
_BATCH = 2000


def upgrade() -> None:
    address_words = op.create_table(
        "address_words",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("word", _WORD, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "word", "email"),
    )
    member_words = op.create_table(
        "member_words",
        sa.Column("word", _WORD, nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("word", "user_id"),
    )
    conn = op.get_bind()
    users = {uid: (email, name, role) for uid, email, name, role in conn.execute(
        sa.text("SELECT id, email, display_name, role FROM users"))}
    members = [{"word": w, "user_id": uid} for uid, (email, name, role) in users.items()
               if role in MEMBER_ROLES for w in words(email, name)]
    if members:
        conn.execute(member_words.insert(), members)
    # The people of every copy held, newest name last; then their words, in batches.
    people: dict[tuple[str, str], str | None] = {}
    rows = conn.execute(sa.text(
        "SELECT e.user_id, e.is_sender, m.from_email, m.from_name, m.to_list, m.cc_list, m.bcc_list "
        "FROM mailbox_entries e JOIN messages m ON m.id = e.message_id ORDER BY e.sent_at"))
    for user_id, is_sender, from_email, from_name, to, cc, bcc in rows:
        lists = [json.loads(v) if isinstance(v, str) else v for v in (to, cc, bcc)]  # SQLite gives the text
        own = users.get(user_id, ("", None, None))[0].lower()
        for person in people_of_copy({"email": from_email, "name": from_name}, (lists[0] or []) + (lists[1] or []),
                                     lists[2] or [], bool(is_sender)):
            email = (person.get("email") or "").lower()
            if email and email != own:
                name = " ".join((person.get("name") or "").split()) or None
                people[(user_id, email)] = name or people.get((user_id, email))
    batch: list[dict] = []
    for (user_id, email), name in people.items():
        batch += [{"user_id": user_id, "word": w, "email": email, "name": name} for w in words(email, name)]
        if len(batch) >= _BATCH:
            conn.execute(address_words.insert(), batch)
            batch = []
    if batch:
        conn.execute(address_words.insert(), batch)


def downgrade() -> None:
    op.drop_table("member_words")
    op.drop_table("address_words")
