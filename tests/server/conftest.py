"""The server's tests run on both databases: the session PEN here is made once on SQLite
and once on PostgreSQL (ids [sqlite] and [postgresql]; the PostgreSQL half skips with one
line where PostgreSQL is not installed, and fails under PEN_REQUIRE_TOOLS=1). Fixtures that
make a PEN of their own ask for `database` to do the same."""

from __future__ import annotations

import pytest

from pen_devstack import SmtpSink
from tests.conftest import TEARDOWN_STOP_SECONDS, Pen, in_process, make_pen


@pytest.fixture(scope="session")
def db_smtp(database):
    """An SMTP sink per database: the [sqlite] and [postgresql] runs of a test send the same
    e-mails, and each must find only its own (PENs made for both databases use this one)."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def pen(tmp_path_factory, db_smtp, database):
    process = make_pen(tmp_path_factory.mktemp("pen"), db_smtp, database_url=database()).start()
    yield Pen(process, db_smtp)
    process.stop(TEARDOWN_STOP_SECONDS)


@pytest.fixture
def in_process_pen(tmp_path, db_smtp, database):
    """A fresh PEN of this test's own, in this process (InProcessPen), on each database."""
    with in_process(make_pen(tmp_path / "pen", db_smtp, database_url=database()), db_smtp) as p:
        yield p
