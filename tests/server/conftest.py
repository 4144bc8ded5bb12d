"""The server's tests run on both databases: the session PEN here is made once on SQLite
and once on PostgreSQL (ids [sqlite] and [postgresql]; the PostgreSQL half skips with one
line where PostgreSQL is not installed, and fails under PEN_REQUIRE_TOOLS=1). Fixtures that
make a PEN of their own ask for `database` to do the same."""

from __future__ import annotations

import pytest

from tests.conftest import TEARDOWN_STOP_SECONDS, Pen, make_pen


@pytest.fixture(scope="session")
def pen(tmp_path_factory, smtp, database):
    process = make_pen(tmp_path_factory.mktemp("pen"), smtp, database_url=database()).start()
    yield Pen(process, smtp)
    process.stop(TEARDOWN_STOP_SECONDS)
