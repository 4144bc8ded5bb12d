"""Sentences count in words that agree with the number: "1 second", "1 person"."""

from pathlib import Path

import pytest

from pen_server.db import Database, migrate
from pen_server.errors import ApiError
from pen_server.ratelimit import RateLimited, Rule, SignInLimiter
from pen_server.send_limits import check_recipient_cap
from pen_server.settings import Settings
from pen_server.text import plural


def test_plural():
    assert [plural(n, "second") for n in (0, 1, 2)] == ["0 seconds", "1 second", "2 seconds"]
    assert plural(1, "person", "people") == "1 person" and plural(3, "person", "people") == "3 people"


def test_a_cap_of_one_is_one_person(tmp_path: Path):
    with pytest.raises(ApiError) as caught:
        check_recipient_cap(Settings(data_dir=tmp_path, max_recipients=1), 2)
    assert "at most 1 person (to, cc and bcc together)" in caught.value.message
    assert caught.value.fields == {"to": "at most 1 recipient in to, cc and bcc together"}


def test_a_wait_of_one_second_says_second(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    db = Database(url)
    try:
        limiter = SignInLimiter(db, Rule(1, 60), Rule(100, 900), Rule(100, 60))
        limiter.reserve("ann@abc.example", "10.0.0.1")  # under way: the next try waits a second for it
        with pytest.raises(RateLimited) as caught:
            limiter.reserve("ann@abc.example", "10.0.0.1")
    finally:
        db.dispose()
    assert caught.value.wait == 1 and caught.value.why.endswith("; wait 1 second and try again."), caught.value.why
