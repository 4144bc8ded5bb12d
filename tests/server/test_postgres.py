"""PostgreSQL as pen-server's second database, on a real throwaway cluster
(pen_devstack.postgres): `init --database-url`, every Alembic migration up and down."""

from __future__ import annotations

import tomllib

from pen_server.settings import load_settings
from tests.server.test_init_files import pen_server


def test_init_on_an_empty_postgresql_database_and_refuses_a_used_one(tmp_path, postgres):
    url = postgres.create_database()
    done = pen_server("init", "--data", str(tmp_path / "pen"), "--name", "ABC", "--base-url",
                      "https://pen.abc.example", "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert tomllib.loads((tmp_path / "pen" / "pen-server.toml").read_text())["database"] == {"url": url}
    assert load_settings(tmp_path / "pen", env={}).database_url == url
    assert not (tmp_path / "pen" / "pen.db").exists()
    with postgres.connect(url.rsplit("/", 1)[1]) as conn:
        assert conn.execute("select count(*) from users").fetchone() == (0,)
    # A second PEN on the same database would share (and overwrite) the first one's rows.
    done = pen_server("init", "--data", str(tmp_path / "other"), "--name", "ABC", "--base-url",
                      "https://pen.abc.example", "--database-url", url)
    assert done.returncode == 1
    assert done.stderr == ("pen-server: The database already holds tables; give an empty database (or drop its "
                           "tables); nothing was written.\n")
    assert not (tmp_path / "other").exists()
    done = pen_server("init", "--data", str(tmp_path / "other"), "--name", "ABC", "--base-url",
                      "https://pen.abc.example", "--database-url", "mysql://x@localhost/pen")
    assert done.returncode == 1 and "must start with postgresql+psycopg://" in done.stderr


def _alembic(url: str, *step: str) -> None:
    from alembic import command
    from alembic.config import Config

    from pen_server.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    getattr(command, step[0])(cfg, step[1])


def _revisions() -> list[str]:
    """Every migration's revision, oldest first (so a new migration is walked too)."""
    from alembic.script import ScriptDirectory

    from pen_server.db import MIGRATIONS

    script = ScriptDirectory(str(MIGRATIONS))
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def _schema_drift(url: str) -> list:
    """What differs between the migrated database and the models (Alembic's comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from pen_server import search_index
    from pen_server.models import Base

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            index_tables = set(search_index.tables(conn.dialect.name))

            def ours(obj, name, type_, _reflected, _compare_to) -> bool:
                """The search index is no model (FTS5 and tsvector tables are of one database only)."""
                table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
                return table not in index_tables

            return compare_metadata(MigrationContext.configure(conn, opts={"include_object": ours}), Base.metadata)
    finally:
        engine.dispose()


def test_every_migration_runs_up_and_down_with_rows_in_place(tmp_path, database):
    """0001 to head one step at a time with rows made under 0001 (the data steps of 0002 and
    0003 fill them in), the result equal to the models, then down to nothing and up again."""
    from sqlalchemy import create_engine, inspect, text

    url = database() or f"sqlite:///{tmp_path / 'pen.db'}"
    _alembic(url, "upgrade", "0001")
    engine = create_engine(url)
    with engine.begin() as db:  # the rows of a PEN of 0001's days: a message with two attachments
        for uid, email in (("u1", "ann@abc.example"), ("u2", "bob@abc.example")):
            db.execute(text("insert into users (id, email, display_name, role, created_at) values "
                            "(:id, :email, 'A', 'member', '2026-01-02 03:04:05')"), {"id": uid, "email": email})
        db.execute(text("insert into messages (id, thread_id, sender_id, from_email, to_list, cc_list, bcc_list, "
                        "subject, body_text, snippet, size, sent_at) values ('m1', 't1', 'u1', "
                        "'ann@abc.example', '[]', '[]', '[]', 'Hi', 'Body', 'Body', 4, '2026-01-02 03:04:05')"))
        db.execute(text("insert into blobs (sha256, size, created_at) values ('ab', 1, '2026-01-02 03:04:05')"))
        for aid in ("a1", "a2"):
            db.execute(text("insert into attachments (id, owner_id, message_id, position, filename, content_type, "
                            "size, sha256, created_at) values (:id, 'u1', 'm1', 0, 'f.txt', 'text/plain', 1, "
                            "'ab', '2026-01-02 03:04:05')"), {"id": aid})
        for uid, folder in (("u1", "sent"), ("u2", "inbox")):
            db.execute(text("insert into mailbox_entries (user_id, message_id, folder, unread, is_sender, sent_at) "
                            "values (:u, 'm1', :f, false, true, '2026-01-02 03:04:05')"), {"u": uid, "f": folder})
    revisions = _revisions()
    assert revisions[:6] == ["0001", "0002", "0003", "0004", "0005", "0006"], revisions
    for revision in revisions[1:]:
        _alembic(url, "upgrade", revision)
    assert _schema_drift(url) == []
    with engine.connect() as db:
        assert db.execute(text("select attachment_count from messages")).scalar() == 2
        counts = db.execute(text("select user_id, folder, total from folder_counts order by user_id")).all()
        assert [tuple(row) for row in counts] == [("u1", "sent", 1), ("u2", "inbox", 1)]
        # 0010 indexed the message that was there for search.
        indexed = "message_search" if db.dialect.name == "postgresql" else "search_keys"
        assert db.execute(text(f"select count(*) from {indexed}")).scalar() == 1
        # 0014 made the word list again from the index (PostgreSQL) or built the index again,
        # keeping the values its rows are forgotten by (SQLite).
        words = db.execute(text("select word from search_words order by word")).scalars().all()
        assert words == ["abc", "ann", "body", "example"]
        if db.dialect.name == "sqlite":
            from pen_server.search_index import owner_word

            assert db.execute(text("select meta, owners from search_keys")).one() == (
                "attachment", f"{owner_word('u1')} {owner_word('u2')}")
    for revision in [*reversed(revisions[:-1]), "base"]:
        _alembic(url, "downgrade", revision)
    assert inspect(engine).get_table_names() == ["alembic_version"]
    _alembic(url, "upgrade", "head")
    assert _schema_drift(url) == []
    engine.dispose()


def test_a_pooled_connection_the_database_dropped_is_replaced_unseen(postgres, monkeypatch):
    """A connection idle in the pool for a while is pinged before use: when the database
    ended it meanwhile (a restart, a firewall), the request gets a new one instead of an error."""
    from sqlalchemy import text

    from pen_server import db as dbmod

    url = postgres.create_database()
    database = dbmod.Database(url)
    try:
        with database.session() as s:
            pid = s.execute(text("select pg_backend_pid()")).scalar()
        with postgres.connect() as admin:
            assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough
        with database.session() as s:
            assert s.execute(text("select pg_backend_pid()")).scalar() != pid
    finally:
        database.dispose()
