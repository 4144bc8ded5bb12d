"""The search language of GET /messages?q=: the parser on its own, then every key, their
combinations, the 422 sentences and paging with q through the real server."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pen_server.search import SearchError, Term, parse

# ---- the parser alone ----

def test_words_without_keys_are_terms_each():
    assert parse("Bob Stone") == [Term(None, "Bob"), Term(None, "Stone")]
    assert parse("  count ") == [Term(None, "count")]
    assert parse("100%_") == [Term(None, "100%_")]
    assert parse("10:30 meeting") == [Term(None, "10:30"), Term(None, "meeting")]  # a colon after digits is no key
    assert parse("Re: welcome") == [Term(None, "Re:"), Term(None, "welcome")]  # nor a word that ends in a colon
    assert parse("from:ann Re: x") == [Term("from", "ann"), Term(None, "Re:"), Term(None, "x")]
    assert parse("") == []


def test_keys_phrases_and_words():
    assert parse('from:ann has:attachment budget "next week" subject:"Q3 plan"') == [
        Term("from", "ann"), Term("has", True), Term(None, "budget"), Term(None, "next week"),
        Term("subject", "Q3 plan")]
    assert parse("IS:Unread is:read To:bob cc:cat body:x") == [
        Term("is", True), Term("is", False), Term("to", "bob"), Term("cc", "cat"), Term("body", "x")]
    assert parse("before:2026-02-01 after:2026-01-01") == [
        Term("before", datetime(2026, 2, 1, tzinfo=UTC)),
        Term("after", datetime(2026, 1, 1, tzinfo=UTC))]
    assert parse('"" "a"') == [Term(None, "a")]


@pytest.mark.parametrize("q, words", [
    ("frm:ann", ['"frm:" is not a search key', "double quotes"]),
    ("from:ann http://x.example", ['"http:" is not a search key']),
    ("from: ann", ['"from:" needs a value', "from:ann"]),
    ("before:2026-13-01", ['"before:2026-13-01" is not a date', "YYYY-MM-DD"]),
    ("after:yesterday", ['"after:yesterday" is not a date']),
    ("after:20260101", ['"after:20260101" is not a date']),
    ('subject:"budget plan', ["double quote before budget plan is not closed"]),
    ('budget "', ["double quote at the end of the search is not closed"]),
    ("has:pdf", ['"has:pdf" is not understood', "has:attachment"]),
    ("is:starred", ['"is:starred" is not understood', "unread or read"]),
    ("a " * 33 + "from:x", ["at most 32 terms"]),
])
def test_invalid_queries_name_the_word(q, words):
    with pytest.raises(SearchError) as caught:
        parse(q)
    sentence = caught.value.message
    assert all(w in sentence for w in words), sentence
    assert sentence.endswith(".") and caught.value.fields == {"q": sentence}


# ---- through the API ----

def ids(c, q: str, **params) -> set[str]:
    r = c.get("/messages", params={"q": q, "limit": 200, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"]), body  # the count agrees with what is shown
    return {m["id"] for m in body["items"]}


@pytest.fixture
def corpus(pen, send):
    """Five messages to cat that differ in one thing each, under a tag of their own."""
    tag = uuid.uuid4().hex[:10]
    with pen.as_user("ann") as c:
        up = c.post("/uploads", params={"filename": "plan.txt"}, content=b"the plan",
                    headers={"Content-Type": "text/plain"})
        assert up.status_code == 201, up.text
    msgs = {
        "plain": send("bob", ["cat"], subject=f"{tag} lunch", body="see you at noon"),
        "budget": send("ann", ["cat"], subject=f"{tag} budget review", body="numbers for next week"),
        "attached": send("ann", ["cat"], subject=f"{tag} the plan", body="attached", attachments=[up.json()["id"]]),
        "named": send("bob", [{"email": "cat@abc.example", "name": "Catherine Moss"}], cc=["ann"],
                      subject=f"{tag} minutes", body="budget in the minutes"),
        "literal": send("bob", ["cat"], subject=f"{tag} 7%_done", body="from:nobody"),
    }
    return tag, {k: v["id"] for k, v in msgs.items()}


def test_each_key(pen, corpus):
    tag, m = corpus
    with pen.as_user("cat") as c:
        assert ids(c, tag) == set(m.values())  # a plain word, as before
        assert ids(c, f"{tag} from:ann") == {m["budget"], m["attached"]}
        assert ids(c, f'{tag} from:"Bob Stone"') == {m["plain"], m["named"], m["literal"]}
        assert ids(c, f"{tag} to:catherine") == {m["named"]}
        assert ids(c, f"{tag} to:cat@abc") == set(m.values())
        assert ids(c, f"{tag} to:email") == set()  # the JSON's own keys are not searched
        assert ids(c, f"{tag} cc:ann") == {m["named"]}
        assert ids(c, f"{tag} cc:bob") == set()
        assert ids(c, f"{tag} subject:budget") == {m["budget"]}
        assert ids(c, f"{tag} body:budget") == {m["named"]}
        assert ids(c, f'"{tag}" budget') == {m["budget"], m["named"]}  # words AND, each over subject or body
        assert ids(c, f"{tag} budget") == {m["budget"], m["named"]}  # words without quotes: each anywhere
        assert ids(c, f"{tag} has:attachment") == {m["attached"]}
        assert ids(c, f'{tag} "next week"') == {m["budget"]}
        assert ids(c, f'{tag} "week next"') == set()
        assert ids(c, f"{tag} subject:7%_") == {m["literal"]}  # % and _ stay literal
        assert ids(c, f"{tag} subject:7_d") == set()
        assert ids(c, f'{tag} "from:nobody"') == {m["literal"]}  # quoted: text, not a key
        assert ids(c, f"{tag} is:unread") == set(m.values())
        c.patch(f"/messages/{m['plain']}", json={"unread": False})
        assert ids(c, f"{tag} is:read") == {m["plain"]}
        assert ids(c, f"{tag} is:unread") == set(m.values()) - {m["plain"]}
        assert ids(c, f"{tag} is:unread", unread="false") == set()  # both filters apply


def test_dates_are_utc_days(pen, corpus):
    tag, m = corpus
    with pen.as_user("cat") as c:
        sent = datetime.fromisoformat(c.get(f"/messages/{m['plain']}").json()["sent_at"].replace("Z", "+00:00"))
        day = sent.astimezone(UTC).date()
        before, after = day - timedelta(days=1), day + timedelta(days=1)
        everything = set(m.values())
        assert ids(c, f"{tag} after:{day}") == everything  # on or after that day
        assert ids(c, f"{tag} before:{after}") == everything
        assert ids(c, f"{tag} before:{day}") == set()
        assert ids(c, f"{tag} after:{after}") == set()
        assert ids(c, f"{tag} after:{before} before:{after} from:ann has:attachment") == {m["attached"]}


def test_combinations_and_paging_stay_right(pen, send):
    tag = uuid.uuid4().hex[:10]
    for i in range(7):
        send("ann" if i % 2 else "bob", ["cat"], subject=f"{tag} page {i}", body="weekly" if i < 5 else "x")
    with pen.as_user("cat") as c:
        want = [f"{tag} page {i}" for i in (4, 3, 2, 1, 0)]  # body:weekly, newest first
        for order, expect in (("newest", want), ("oldest", want[::-1])):
            got, cursor = [], None
            while True:
                r = c.get("/messages", params={"q": f"{tag} body:weekly", "limit": 2, "order": order,
                                               **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                assert r.json()["total"] == 5
                got += [x["subject"] for x in r.json()["items"]]
                cursor = r.json()["next_cursor"]
                if not cursor:
                    break
            assert got == expect
        assert [x["subject"] for x in c.get("/messages", params={"q": f"{tag} body:weekly from:ann"}).json()["items"]] \
            == [f"{tag} page 3", f"{tag} page 1"]


@pytest.mark.parametrize("q, word", [
    ("frm:ann", '"frm:"'), ("before:31-01-2026", '"before:31-01-2026"'),
    ('subject:"open', "double quote before open"), ("has:link", '"has:link"'),
    # No stored text holds NUL, and PostgreSQL cannot even compare with it: one sentence.
    ("lab\x00results", "NUL character"), ('subject:"a\x00"', "NUL character")])
def test_invalid_syntax_is_422_naming_the_word(pen, q, word):
    with pen.as_user("cat") as c:
        r = c.get("/messages", params={"q": q})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_failed" and word in err["message"] and err["fields"] == {"q": err["message"]}
