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
