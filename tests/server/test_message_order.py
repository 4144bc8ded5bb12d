"""GET /messages?order=oldest: the same list from the other end, keyset-paged with cursors
of its own, so that a client can show the oldest message without walking every page."""

import uuid


def subjects(page: dict) -> list[str]:
    return [m["subject"] for m in page["items"]]


def walk(c, params: dict) -> tuple[list[str], list[dict]]:
    """Every page of a listing, following next_cursor; the subjects and the pages."""
    pages, cursor = [], None
    while True:
        page = c.get("/messages", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        pages.append(page.json())
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return [s for p in pages for s in subjects(p)], pages


def test_both_orders_list_the_same_messages_reversed(pen, send):
    tag = uuid.uuid4().hex[:8]
    for i in range(7):
        send("bob", ["cat"], subject=f"order {tag} {i}")
    with pen.as_user("cat") as c:
        newest, _ = walk(c, {"limit": 3, "q": tag})
        oldest, pages = walk(c, {"limit": 3, "q": tag, "order": "oldest"})
        explicit, _ = walk(c, {"limit": 3, "q": tag, "order": "newest"})
        assert newest == explicit == [f"order {tag} {i}" for i in range(6, -1, -1)]
        assert oldest == newest[::-1]
        assert [len(p["items"]) for p in pages] == [3, 3, 1] and all(p["total"] == 7 for p in pages)
        # The other filters apply alike: unread, and the folder.
        phrase = f'"order {tag} 2"'  # quoted: one phrase, not three words
        [two] = c.get("/messages", params={"q": phrase}).json()["items"]
        c.patch(f"/messages/{two['id']}", json={"unread": False})
        unread_new, _ = walk(c, {"limit": 2, "q": tag, "unread": "true"})
        unread_old, _ = walk(c, {"limit": 2, "q": tag, "unread": "true", "order": "oldest"})
        assert f"order {tag} 2" not in unread_old and unread_old == unread_new[::-1] and len(unread_old) == 6
    with pen.as_user("bob") as c:
        sent_new, _ = walk(c, {"folder": "sent", "limit": 4, "q": tag})
        sent_old, _ = walk(c, {"folder": "sent", "limit": 4, "q": tag, "order": "oldest"})
        assert sent_old == sent_new[::-1] == [f"order {tag} {i}" for i in range(7)]


def test_oldest_first_paging_is_stable_while_messages_arrive(pen, send):
    tag = uuid.uuid4().hex[:8]
    for i in range(7):
        send("bob", ["cat"], subject=f"arrive {tag} {i}")
    with pen.as_user("cat") as c:
        first = c.get("/messages", params={"limit": 3, "q": tag, "order": "oldest"}).json()
        assert first["total"] == 7 and subjects(first) == [f"arrive {tag} {i}" for i in (0, 1, 2)]
        send("bob", ["cat"], subject=f"arrive {tag} new")  # arrives between pages
        second = c.get("/messages", params={"limit": 3, "q": tag, "order": "oldest",
                                            "cursor": first["next_cursor"]}).json()
        assert subjects(second) == [f"arrive {tag} {i}" for i in (3, 4, 5)] and second["total"] == 8
        third = c.get("/messages", params={"limit": 3, "q": tag, "order": "oldest",
                                           "cursor": second["next_cursor"]}).json()
        assert subjects(third) == [f"arrive {tag} 6", f"arrive {tag} new"] and third["next_cursor"] is None


def test_a_cursor_works_only_for_its_own_order(pen, send):
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        send("bob", ["cat"], subject=f"cursor {tag} {i}")
    with pen.as_user("cat") as c:
        newest = c.get("/messages", params={"limit": 1, "q": tag}).json()["next_cursor"]
        oldest = c.get("/messages", params={"limit": 1, "q": tag, "order": "oldest"}).json()["next_cursor"]
        assert newest and oldest and newest != oldest
        for cursor, order in ((newest, "oldest"), (oldest, "newest"), (oldest, None), ("garbage!", "oldest")):
            r = c.get(
                "/messages", params={"limit": 1, "q": tag, "cursor": cursor, **({"order": order} if order else {})}
            )
            assert r.status_code == 422, (cursor, order, r.text)
            assert r.json()["error"]["code"] == "validation_failed" and "cursor" in r.json()["error"]["fields"]
        for order in ("backwards", "", "OLDEST", "asc"):
            r = c.get("/messages", params={"order": order})
            assert r.status_code == 422, (order, r.text)
            assert r.json()["error"]["code"] == "validation_failed" and list(r.json()["error"]["fields"]) == ["order"]
        ok = c.get("/messages", params={"limit": 1, "q": tag, "cursor": oldest, "order": "oldest"})
        assert ok.status_code == 200 and subjects(ok.json()) == [f"cursor {tag} 1"]
