"""The sign-in limiter keeps its counts in the database (table signin_counts), shared by every
server process: what a stranger sends cannot grow the table without bound, refused tries
write nothing, and two limiters on one database (two processes) see one count. In process,
on SQLite and PostgreSQL (a flood over TLS would take minutes)."""

import pytest
from sqlalchemy import func, select

from pen_server.db import Database, migrate
from pen_server.models import SignInCount
from pen_server.ratelimit import RateLimited, Rule, SignInLimiter


@pytest.fixture
def db(tmp_path, database):
    url = database() or f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


class Flat(Rule):
    """Past the free failures, the whole maximum at once (not 1 s, 2 s ...): what these tests
    check then holds however slowly a loaded machine runs them."""

    def delay(self, failures: int) -> float:
        return 0.0 if failures < self.free else self.max_delay


def _limiter(db, max_entries: int = 50_000) -> SignInLimiter:
    return SignInLimiter(db, Flat(5, 60), Flat(10, 900), Flat(20, 60), max_entries=max_entries)


def _rows(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(SignInCount))


def test_new_names_and_addresses_cannot_grow_it_without_bound(db):
    limiter = _limiter(db, 300)
    for i in range(600):
        limiter.reserve(f"nobody{i}@abc.example", f"10.0.{i >> 8 & 255}.{i & 255}").failed()
    assert _rows(db) == 3 * 600  # own, address, account: nothing in clear
    with db.session() as s:
        assert not any("@" in k for k in s.scalars(select(SignInCount.key_hash)))
    limiter.prune()
    assert _rows(db) <= 300


def test_refused_tries_store_nothing_so_they_cannot_crowd_out_a_count(db):
    limiter = _limiter(db, 100)
    for _ in range(5):
        limiter.reserve("ann@abc.example", "10.0.0.1").failed()
    for i in range(10):
        limiter.reserve(f"nobody{i}@abc.example", "10.0.0.9").failed()
    before = _rows(db)
    refused = 0
    for i in range(10, 500):  # the slowed address tries endless new accounts
        try:
            limiter.reserve(f"nobody{i}@abc.example", "10.0.0.9")
        except RateLimited:
            refused += 1
    assert refused == 490 and _rows(db) == before
    with pytest.raises(RateLimited) as limited:
        limiter.reserve("ann@abc.example", "10.0.0.1")
    assert 1 <= limited.value.wait <= 60


def test_two_processes_share_one_count(db):
    """Two limiters on one database, as two server processes: alternating wrong guesses meet
    the one limit of five free failures (before, each process counted its own: ten)."""
    other = Database(db.url)
    try:
        first, second = _limiter(db), _limiter(other)
        for i in range(5):
            (first if i % 2 else second).reserve("ann@abc.example", "10.0.0.1").failed()
        with pytest.raises(RateLimited):
            first.reserve("ann@abc.example", "10.0.0.1")
        with pytest.raises(RateLimited):
            second.reserve("ann@abc.example", "10.0.0.1")
    finally:
        other.dispose()


def test_an_undecided_try_counts_until_decided_and_a_success_clears_its_own_count(db):
    limiter = _limiter(db)
    for _ in range(4):
        limiter.reserve("bob@abc.example", "10.0.0.2").failed()
    attempt = limiter.reserve("bob@abc.example", "10.0.0.2")  # the fifth, still being checked
    with pytest.raises(RateLimited) as limited:
        limiter.reserve("bob@abc.example", "10.0.0.2")
    assert limited.value.wait == 1
    attempt.succeeded()
    for _ in range(4):  # the count starts again
        limiter.reserve("bob@abc.example", "10.0.0.2").failed()
