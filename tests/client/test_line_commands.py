"""The line-mode commands a script needs: folders, move, delete, mark, forward, list with a
cursor and a search, --version. Each runs as the real `penmail` (a subprocess) against the
real PEN, plain and --json, and is checked through the API and by its exit code (0 done,
1 failed, 2 usage, 3 not signed in, 4 not found)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.client.test_line_mode import EMAIL, Line, find, fresh_user, upload


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


@pytest.fixture
def person(line, pen, send):
    """A new account with three unread messages from ann; (who, config, their ids newest first)."""
    address = fresh_user(pen)
    who = address.split("@")[0]
    tag = uuid.uuid4().hex[:8]
    ids = [send("ann", [address], subject=f"{tag} m{i}", body=f"message {i}")["id"] for i in range(3)]
    return who, address, line.config(who, email=address), ids[::-1], tag


def api_state(pen, address: str, message_id: str) -> tuple[str, bool] | None:
    from tests.conftest import PASSWORD

    with pen.client() as c:
        token = c.post("/auth/login", json={"email": address, "password": PASSWORD}).json()["access_token"]
    with pen.client(token) as c:
        r = c.get(f"/messages/{message_id}")
        return (r.json()["folder"], r.json()["unread"]) if r.status_code == 200 else None


def test_folders_plain_and_json(line, pen, person):
    who, address, config, ids, _tag = person
    done = line("mark", ids[0], "read", who=who, config=config)
    assert done.code == 0, done.err
    plain = line("folders", who=who, config=config)
    assert plain.code == 0 and plain.err == ""
    assert plain.lines == ["inbox\t3\t2", "sent\t0\t0", "archive\t0\t0", "trash\t0\t0"]
    doc = line("folders", "--json", who=who, config=config).json()
    assert doc == {"items": [{"name": "inbox", "total": 3, "unread": 2}, {"name": "sent", "total": 0, "unread": 0},
                             {"name": "archive", "total": 0, "unread": 0}, {"name": "trash", "total": 0, "unread": 0}]}
    nobody = line("folders", who=who, config=config, password=None)
    assert nobody.code == 3 and "not signed in" in nobody.one_sentence()


def test_move_one_and_several(line, pen, person):
    who, address, config, ids, _tag = person
    done = line("move", ids[0], ids[1], "archive", who=who, config=config)
    assert done.code == 0 and done.err == "", done.err
    assert done.lines == [f"Moved {ids[0]} to the archive.", f"Moved {ids[1]} to the archive."]
    assert api_state(pen, address, ids[0]) == ("archive", True) == api_state(pen, address, ids[1])
    doc = line("move", "--json", ids[0], "inbox", who=who, config=config)
    assert doc.code == 0 and doc.json()["failed"] == []
    assert [(d["id"], d["folder"]) for d in doc.json()["done"]] == [(ids[0], "inbox")]
    assert api_state(pen, address, ids[0])[0] == "inbox"
    # One that is not there among good ones: the good ones are done, the other is said, exit 4.
    mixed = line("move", ids[2], "NoSuchMessage12345", ids[0], "trash", "--json", who=who, config=config)
    assert mixed.code == 4
    assert [d["id"] for d in mixed.json()["done"]] == [ids[2], ids[0]]
    assert [(f["id"], f["exit_code"]) for f in mixed.json()["failed"]] == [("NoSuchMessage12345", 4)]
    assert "NoSuchMessage12345: That message does not exist" in mixed.err and "2 of 3 were moved." in mixed.err
    assert api_state(pen, address, ids[2])[0] == "trash"
    alone = line("move", "NoSuchMessage12345", "archive", who=who, config=config)
    assert alone.code == 4 and "does not exist" in alone.one_sentence()
    assert (
        line("move", "NoSuchMessage12345", "archive", "--json", who=who, config=config).json()["error"]["exit_code"]
        == 4
    )
    usage = line("move", ids[0], "sent", who=who, config=config)
    assert usage.code == 2 and "invalid choice" in usage.err and "Traceback" not in usage.err
    assert line("move", ids[0], who=who, config=config).code == 2


def test_mark_read_and_unread(line, pen, person):
    who, address, config, ids, _tag = person
    done = line("mark", ids[0], ids[1], "read", who=who, config=config)
    assert done.code == 0 and done.lines == [f"Marked {ids[0]} read.", f"Marked {ids[1]} read."]
    assert api_state(pen, address, ids[0]) == ("inbox", False)
    doc = line("mark", "--json", ids[0], "unread", who=who, config=config).json()
    assert doc["done"][0]["unread"] is True and api_state(pen, address, ids[0]) == ("inbox", True)
    assert line("mark", ids[0], "seen", who=who, config=config).code == 2


def test_delete_to_trash_then_for_good(line, pen, person):
    who, address, config, ids, _tag = person
    refused = line("delete", "--for-good", ids[0], who=who, config=config)
    assert refused.code == 1
    sentence = refused.one_sentence()
    assert "is in the inbox, not the trash" in sentence and f"penmail delete {ids[0]}" in sentence
    assert api_state(pen, address, ids[0]) == ("inbox", True)
    doc = line("delete", "--json", "--for-good", ids[0], who=who, config=config).json()
    assert doc["error"]["code"] == "not_in_trash" and doc["error"]["exit_code"] == 1
    trashed = line("delete", ids[0], ids[1], who=who, config=config)
    assert trashed.code == 0 and trashed.lines == [f"Moved {ids[0]} to the trash.", f"Moved {ids[1]} to the trash."]
    assert api_state(pen, address, ids[0])[0] == "trash"
    gone = line("delete", "--for-good", "--json", ids[0], ids[1], who=who, config=config)
    assert gone.code == 0 and [d["deleted"] for d in gone.json()["done"]] == [True, True]
    assert api_state(pen, address, ids[0]) is None and api_state(pen, address, ids[1]) is None
    again = line("delete", "--for-good", ids[0], who=who, config=config)
    assert again.code == 4 and "does not exist" in again.one_sentence()


def test_forward_carries_the_attachments(line, pen, send):
    data = b"agenda for the meeting\n" * 50
    first = upload(pen, "bob", "agenda.txt", data)
    subject_ = f"LM {uuid.uuid4().hex[:8]} agenda"
    original = send("bob", ["ann"], subject=subject_, body="See the agenda.", attachments=[first])
    done = line("forward", original["id"], "--to", EMAIL["cat"], stdin="For you, Cat.\n")
    assert done.code == 0, done.err
    assert done.lines == [f'Sent "Fwd: {subject_}" to {EMAIL["cat"]} (id {done.lines[0].split("(id ")[1][:-2]}).',
                          "Notifications to 1 recipient: 1 sent."]
    got = find(pen, "cat", f"Fwd: {subject_}")
    assert [(a["filename"], a["sha256"]) for a in got["attachments"]] == [
        ("agenda.txt", hashlib.sha256(data).hexdigest())
    ]
    assert got["body_text"].startswith("For you, Cat.\n\n---------- Forwarded message ----------")
    assert "See the agenda." in got["body_text"]
    assert pen.mails_to(EMAIL["cat"], f"Fwd: {subject_}")
    doc = line("forward", "--json", original["id"], "--to", EMAIL["bob"], stdin="")
    assert doc.code == 0 and doc.json()["subject"] == f"Fwd: {subject_}" and len(doc.json()["attachments"]) == 1
    assert line("forward", original["id"]).code == 2  # no --to
    missing = line("forward", "NoSuchMessage12345", "--to", EMAIL["cat"])
    assert missing.code == 4 and "does not exist" in missing.err


def test_list_pages_with_the_cursor(line, pen, person):
    who, address, config, ids, tag = person
    first = line("list", "--limit", "2", who=who, config=config)
    assert first.code == 0 and [row.split("\t")[0] for row in first.lines] == ids[:2]
    more = first.err.strip()
    assert more.startswith("More: penmail list --limit 2 --cursor "), first.err
    cursor = more.rsplit(" ", 1)[1]
    second = line("list", "--limit", "2", "--cursor", cursor, who=who, config=config)
    assert [row.split("\t")[0] for row in second.lines] == ids[2:] and second.err == ""
    doc = line("list", "--json", "--limit", "1", who=who, config=config).json()
    assert doc["next_cursor"] and doc["total"] == 3 and [i["id"] for i in doc["items"]] == ids[:1]
    doc2 = line("list", "--json", "--limit", "5", "--cursor", doc["next_cursor"], who=who, config=config).json()
    assert [i["id"] for i in doc2["items"]] == ids[1:] and doc2["next_cursor"] is None
    bad = line("list", "--cursor", "garbage!", who=who, config=config)
    assert bad.code == 2 and "cursor" in bad.one_sentence()


def test_list_with_the_search_language(line, pen, person, send):
    who, address, config, ids, tag = person
    first = upload(pen, "bob", "plan.txt", b"plan")
    with_file = send("bob", [address], subject=f"{tag} plan", body="attached", attachments=[first])["id"]
    found = line("list", "--search", f"{tag} from:bob has:attachment", who=who, config=config)
    assert found.code == 0 and [row.split("\t")[0] for row in found.lines] == [with_file]
    doc = line("list", "--json", "--search", f"from:ann {tag} m1", who=who, config=config).json()
    assert doc["total"] == 1 and doc["items"][0]["id"] == ids[1]
    bad = line("list", "--search", "frm:ann", who=who, config=config)
    assert bad.code == 2 and '"frm:" is not a search key' in bad.one_sentence()
    bad_json = line("list", "--json", "--search", "before:tomorrow", who=who, config=config).json()
    assert bad_json["error"]["exit_code"] == 2 and "is not a date" in bad_json["error"]["message"]


def test_version(line):
    import tomllib

    from tests.client.test_line_mode import REPO
    from tui import __version__

    assert __version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = line("--version")
    assert done.code == 0 and done.out.strip() == f"penmail {__version__}"


def test_ids_with_a_dash_among_several():
    """move/mark take several ids and then a word: the order stays when an id starts with "-"."""
    from tui.cli import build_parser
    from tui.line import protect_ids

    parser = build_parser()
    dash = "-Kq3x9_ZpUeWvT2m-1AbCd"
    args = parser.parse_args(protect_ids(parser, ["move", dash, "plainid123", "archive", "--json"]))
    assert (args.ids, args.folder, args.json) == ([dash, "plainid123"], "archive", True)
    args = parser.parse_args(protect_ids(parser, ["mark", "plainid123", dash, "unread"]))
    assert (args.ids, args.state) == (["plainid123", dash], "unread")
    args = parser.parse_args(protect_ids(parser, ["delete", "--for-good", dash]))
    assert (args.ids, args.for_good) == ([dash], True)
    args = parser.parse_args(protect_ids(parser, ["forward", dash, "--to", "a@b.example"]))
    assert (args.id, args.to) == (dash, ["a@b.example"])
