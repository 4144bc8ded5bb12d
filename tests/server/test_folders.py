"""GET /folders: each folder's name, total and unread, as the lists themselves count them."""

import uuid


def folders(c) -> dict:
    r = c.get("/folders")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [f["name"] for f in items] == ["inbox", "sent", "archive", "trash"]
    return {f["name"]: (f["total"], f["unread"]) for f in items}


def test_folder_counts_follow_sends_reads_and_moves(pen, send):
    with pen.as_user("cat") as c:
        before = folders(c)
        tag = uuid.uuid4().hex[:8]
        a = send("ann", ["cat"], subject=f"folders {tag} a")
        send("ann", ["cat"], subject=f"folders {tag} b")
        assert folders(c)["inbox"] == (before["inbox"][0] + 2, before["inbox"][1] + 2)
        c.patch(f"/messages/{a['id']}", json={"unread": False, "folder": "archive"})
        after = folders(c)
        assert after["inbox"] == (before["inbox"][0] + 1, before["inbox"][1] + 1)
        assert after["archive"] == (before["archive"][0] + 1, before["archive"][1])
        for name, (total, unread) in after.items():  # the same numbers as the lists
            assert c.get("/messages", params={"folder": name, "limit": 1}).json()["total"] == total
            assert c.get("/messages", params={"folder": name, "limit": 1, "unread": "true"}).json()["total"] == unread
    with pen.client() as anonymous:
        r = anonymous.get("/folders")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
