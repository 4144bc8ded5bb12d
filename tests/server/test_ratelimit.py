"""The sign-in limiter's memory stays bounded whatever a stranger sends (in process: a flood
of a hundred thousand requests over TLS would take minutes)."""

from pen_server.ratelimit import RateLimited, Rule, SignInLimiter


def _limiter(max_entries: int) -> SignInLimiter:
    return SignInLimiter(Rule(5, 60), Rule(10, 900), Rule(20, 60), max_entries=max_entries)


def test_new_names_and_addresses_cannot_grow_it_without_bound():
    limiter = _limiter(1000)
    for i in range(20_000):
        limiter.reserve(f"nobody{i}@abc.example", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}").failed()
    assert len(limiter._entries) <= 1000 + 3 and len(limiter._known) <= 1000  # + one try's three counts


def test_refused_tries_store_nothing_so_they_cannot_crowd_out_a_count():
    limiter = _limiter(100)
    for _ in range(5):
        limiter.reserve("ann@abc.example", "10.0.0.1").failed()
    for i in range(10):
        limiter.reserve(f"nobody{i}@abc.example", "10.0.0.9").failed()
    refused = 0
    for i in range(10, 5000):  # the slowed address tries endless new accounts
        try:
            limiter.reserve(f"nobody{i}@abc.example", "10.0.0.9")
        except RateLimited:
            refused += 1
    assert refused == 4990
    try:
        limiter.reserve("ann@abc.example", "10.0.0.1")
        raise AssertionError("ann's failures were forgotten")
    except RateLimited as limited:
        assert 1 <= limited.wait <= 60
