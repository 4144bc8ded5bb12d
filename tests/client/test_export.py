"""`penmail export --maildir DIR`: every message once, as RFC 5322 with its attachments,
read back with Python's own `mailbox.Maildir` and email parser: attachments' bytes,
flags (S in cur/, unread in new/), threading headers, Bcc only on one's own copies, a
second run adding only what is new, and hostile subjects, names and file names adding no
header (through the real server, through a PEN that serves them raw, and directly)."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from pen_devstack import add_user
from tests.client.test_line_mode import Line, hostile_pen  # noqa: F401 - the fixture is used here too
from tests.conftest import PASSWORD
from tui.pen_client import Address, Attachment, Message

TOP_HEADERS = {"message-id", "date", "from", "to", "cc", "subject", "x-pen-message-id", "x-pen-thread-id",
               "x-pen-folder", "content-type", "content-transfer-encoding", "mime-version", "in-reply-to",
               "references", "bcc"}


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


@pytest.fixture
def people(pen):
    """Three fresh accounts, so the Maildir holds exactly what a test sent."""
    tag = uuid.uuid4().hex[:8]
    found = {}
    for who, name in (("a", "Ann Export"), ("b", "Bob Export"), ("c", "Cat Export")):
        address = f"{who}-{tag}@abc.example"
        add_user(pen.data, address, name, PASSWORD)
        found[who] = address
    return found


class Api:
    def __init__(self, pen, address: str):
        self.pen, self.address = pen, address
        self.c = pen.client(pen.login(address)["access_token"])

    def upload(self, name: str, data: bytes) -> str:
        r = self.c.post("/uploads", params={"filename": name}, content=data,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def send(self, to, subject: str, body: str = "Text.", **extra) -> dict:
        payload = {"to": [{"email": a} for a in to], "subject": subject, "body_text": body, **extra}
        for key in ("cc", "bcc"):
            if key in payload:
                payload[key] = [{"email": a} for a in payload[key]]
        r = self.c.post("/messages", json=payload, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        return r.json()

    def patch(self, message_id: str, **change) -> None:
        assert self.c.patch(f"/messages/{message_id}", json=change).status_code == 200

    def get(self, message_id: str) -> dict:
        return self.c.get(f"/messages/{message_id}").json()


MAILDIR_FOLDERS = {"": "inbox", "Sent": "sent", "Archive": "archive", "Trash": "trash"}


def folders_of(path) -> dict[str, mailbox.Maildir]:
    """The tree as Python's mailbox reads Maildir++: the root (INBOX) and its sub-folders."""
    root = mailbox.Maildir(str(path), factory=None, create=False)
    assert sorted(root.list_folders()) == ["Archive", "Sent", "Trash"]
    return {name: root.get_folder(name) if name else root for name in MAILDIR_FOLDERS}


def read_maildir(path) -> dict[str, tuple[mailbox.MaildirMessage, email.message.EmailMessage]]:
    """PEN id -> (the Maildir's view with subdir and flags, the parsed message); each once in
    the whole tree, and in the Maildir folder of the PEN folder it was exported from."""
    found = {}
    for name, box in folders_of(path).items():
        for key in box.keys():
            entry = box.get_message(key)
            parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
            pen_id = parsed["X-PEN-Message-Id"]
            assert pen_id not in found, f"{pen_id} is in the Maildir twice"
            if pen_id is not None:
                assert parsed["X-PEN-Folder"] == MAILDIR_FOLDERS[name], (pen_id, name, parsed["X-PEN-Folder"])
            found[pen_id] = (entry, parsed)
    return found


def index_file(line, who: str = "export"):
    """The tree's index, kept in penmail's state folder (never in the Maildir)."""
    files = list((line.tmp / f"state-{who}" / "exports").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def only_mail_in(path) -> None:
    """Mail programs find only Maildir folders in the tree: no index, no lock."""
    assert sorted(os.listdir(path)) == [".Archive", ".Sent", ".Trash", "cur", "new", "tmp"]
    for sub in (".Archive", ".Sent", ".Trash"):
        assert sorted(os.listdir(path / sub)) == ["cur", "new", "tmp"]


def export(line, who_config, *args):
    return line("export", *args, who="export", config=who_config)


def test_export_writes_each_message_once_with_attachments_flags_and_threads(line, pen, people, tmp_path):
    a, b, c = (Api(pen, people[k]) for k in "abc")
    files = {"scan ü.pdf": os.urandom(150_000) + bytes(range(256)), "notes.txt": b"line one\r\nline two\n"}
    ids = [a.upload(name, data) for name, data in files.items()]
    m1 = a.send([b.address], "Results", "Your results, attached.", cc=[c.address], attachments=ids)
    m2 = b.send([a.address], "Re: Results", "Thanks!", in_reply_to=m1["id"])
    m3 = a.send([b.address], "Re: Results", "You are welcome.", in_reply_to=m2["id"],
                body_html="<p>You are <b>welcome</b>.</p>")
    m4 = a.send([c.address], "For Cat, Bob hidden", "Hidden copy.", bcc=[b.address])
    b.patch(m1["id"], unread=False)
    b.patch(m4["id"], folder="archive")
    config = line.config("export", email=people["b"])
    maildir = tmp_path / "Mail"

    done = export(line, config, "--maildir", str(maildir))
    assert done.code == 0, done.err
    assert done.lines == [f"Exported 4 new messages (2 attachments) to {maildir}; 0 were there already."]
    found = read_maildir(maildir)
    assert set(found) == {m1["id"], m2["id"], m3["id"], m4["id"]}
    assert os.listdir(maildir / "tmp") == []
    only_mail_in(maildir)
    index = json.loads(index_file(line).read_text())
    assert set(index["messages"]) == set(found) and index["maildir"] == str(maildir)

    host = "127.0.0.1"
    for pen_id, (entry, parsed) in found.items():
        sent = b.get(pen_id)
        assert parsed["Message-ID"] == f"<{pen_id}@{host}>"
        assert parsed["Date"] == format_datetime(datetime.fromisoformat(sent["sent_at"].replace("Z", "+00:00")))
        assert parsed["Subject"] == sent["subject"]
        assert set(k.lower() for k in parsed.keys()) <= TOP_HEADERS
        assert parsed["Bcc"] is None  # Bob's copies: his own sent one has no Bcc
        # Read: cur/ with S; unread: new/ without flags.
        if sent["unread"]:
            assert (entry.get_subdir(), entry.get_flags()) == ("new", "")
        else:
            assert (entry.get_subdir(), entry.get_flags()) == ("cur", "S")
    # Flags as Bob left them: m1 read, m2 his own (read), m3 and m4 unread.
    assert found[m1["id"]][0].get_flags() == "S" and found[m2["id"]][0].get_flags() == "S"
    assert found[m3["id"]][0].get_subdir() == "new" and found[m4["id"]][0].get_subdir() == "new"

    one = found[m1["id"]][1]
    assert str(one["From"]) == f"Ann Export <{people['a']}>"
    assert str(one["To"]) == people["b"] and str(one["Cc"]) == people["c"]  # as Ann wrote them
    assert one["X-PEN-Folder"] == "inbox" and one["In-Reply-To"] is None
    assert one.get_body(("plain",)).get_content() == "Your results, attached.\n"
    parts = {p.get_filename(): p.get_payload(decode=True) for p in one.iter_attachments()}
    assert parts == files
    # Threading: m2 answers m1, m3 answers m2, with the whole chain in References.
    two, three = found[m2["id"]][1], found[m3["id"]][1]
    assert two["In-Reply-To"] == f"<{m1['id']}@{host}>" and two["References"] == f"<{m1['id']}@{host}>"
    assert two["X-PEN-Folder"] == "sent"
    assert three["In-Reply-To"] == f"<{m2['id']}@{host}>"
    assert three["References"].split() == [f"<{m1['id']}@{host}>", f"<{m2['id']}@{host}>"]
    assert three.get_body(("plain",)).get_content() == "You are welcome.\n"
    assert three.get_body(("html",)).get_content() == "<p>You are <b>welcome</b>.</p>\n"
    assert found[m4["id"]][1]["X-PEN-Folder"] == "archive"

    # The sender's own copy carries Bcc; nobody else's does.
    mine = tmp_path / "AnnMail"
    done = line("export", "--maildir", str(mine), "--folder", "sent", "--json", who="export-a",
                config=line.config("export-a", email=people["a"]))
    assert done.code == 0, done.err
    doc = done.json()
    assert set(doc) == {"maildir", "added", "count", "skipped", "migrated"} and doc["count"] == 3
    assert set(doc["added"][0]) == {"id", "key", "folder", "subject", "flags", "attachments"}
    ann_copy = read_maildir(mine)[m4["id"]][1]
    assert str(ann_copy["Bcc"]) == people["b"]

    # Again: nothing new. Then one new message: exactly that one is added.
    done = export(line, config, "--maildir", str(maildir))
    assert done.lines == [f"Exported 0 new messages (0 attachments) to {maildir}; 4 were there already."]
    m5 = a.send([b.address], "One more", "Fifth.")
    doc = export(line, config, "--maildir", str(maildir), "--json").json()
    assert [x["id"] for x in doc["added"]] == [m5["id"]] and doc["skipped"] == 4
    assert doc["added"][0]["flags"] == "" and doc["added"][0]["folder"] == "inbox"
    assert len(read_maildir(maildir)) == 5

    # The index lost, and someone else's mail beside ours: still nothing twice, theirs untouched.
    index_file(line).unlink()
    foreign = maildir / "cur" / "1700000000.M1P1.elsewhere:2,S"
    foreign.write_bytes(b"From: x@y.example\nSubject: not from penmail\n\nhello\n")
    done = export(line, config, "--maildir", str(maildir))
    assert done.code == 0 and "Exported 0 new messages" in done.out, done
    assert foreign.read_bytes().endswith(b"hello\n")
    assert {name: len(box) for name, box in folders_of(maildir).items()} == {"": 4, "Sent": 1, "Archive": 1,
                                                                             "Trash": 0}

    # --since: only what was sent from then on.
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    done = export(line, config, "--maildir", str(tmp_path / "Empty"), "--since", later)
    assert done.code == 0 and done.out.startswith("Exported 0 new messages"), done
    done = export(line, config, "--maildir", str(tmp_path / "Empty"), "--since", "last tuesday")
    assert done.code == 2 and "--since" in done.one_sentence()
    (tmp_path / "afile").write_text("x")
    done = export(line, config, "--maildir", str(tmp_path / "afile"))
    assert done.code == 1 and "not a Maildir" in done.one_sentence()


def test_hostile_subjects_through_the_real_server_add_no_header(line, pen, people, hostile, tmp_path):
    a = Api(pen, people["a"])
    sent = {}
    for key, value in hostile["text"].items():
        if key.startswith("_"):
            continue
        r = a.c.post("/messages", json={"to": [{"email": people["b"], "name": value[:200]}], "subject": value[:998],
                                        "body_text": value}, headers={"Idempotency-Key": uuid.uuid4().hex})
        if r.status_code == 201:  # the server refuses control characters in subjects
            sent[r.json()["id"]] = r.json()
    assert len(sent) > 15
    config = line.config("export", email=people["b"])
    done = export(line, config, "--maildir", str(tmp_path / "Mail"))
    assert done.code == 0, done.err
    found = read_maildir(tmp_path / "Mail")
    assert set(found) == set(sent)
    for _pen_id, (_, parsed) in found.items():
        names = [k.lower() for k in parsed.keys()]
        assert sorted(names) == sorted({"message-id", "date", "from", "to", "subject", "x-pen-message-id",
                                        "x-pen-thread-id", "x-pen-folder", "content-type",
                                        "content-transfer-encoding", "mime-version"}), names
        assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]


def test_hostile_data_served_raw_exports_without_added_headers(line, hostile_pen, hostile, tmp_path):
    config = line.config("export", server=hostile_pen.url, email="me@abc.example", name="hostile")
    maildir = tmp_path / "Mail"
    done = line("export", "--maildir", str(maildir), "--json", who="export", config=config)
    assert done.code == 0, done.err
    found = read_maildir(maildir)
    assert set(found) == set(hostile_pen.messages)
    for pen_id, (entry, parsed) in found.items():
        names = sorted(k.lower() for k in parsed.keys())
        assert set(names) <= TOP_HEADERS and len(names) == len(set(names)), (pen_id, names)
        assert "bcc" not in names and "x-injected" not in names
        for name, value in parsed.items():
            assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in str(value)), (pen_id, name, value)
        for part in parsed.walk():
            assert {k.lower() for k in part.keys()} <= TOP_HEADERS | {"content-disposition"}
        source = hostile_pen.messages[pen_id]
        got = [p.get_payload(decode=True) for p in parsed.iter_attachments()]
        assert got == [hostile_pen.files[f["id"]] for f in source["attachments"]]
        assert entry.get_subdir() == "new"
    everything = found["m-all"][1]
    assert everything["In-Reply-To"] == "<m-csi_clear_screen@127.0.0.1>"


def raw_message(subject: str, name: str, filename: str = "a.txt", content_type: str = "text/plain") -> Message:
    who = Address("x@evil.example", name)
    return Message(id="m1", thread_id="t1", folder="inbox", sender=who, to=(who, Address("me@abc.example", name)),
                   cc=(who,), subject=subject, sent_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
                   unread=True, attachment_count=1, size=1, snippet="", bcc=(who,), body_text=subject,
                   body_html=None, attachments=(Attachment("a1", filename, content_type, 3, "0" * 64),),
                   in_reply_to="p1")


def test_every_hostile_string_as_subject_name_and_file_name_adds_no_header(hostile):
    from tui.export import build_email, serialize

    values = [v for k, v in hostile["text"].items() if not k.startswith("_")] + hostile["filenames"]
    for value in values:
        msg = build_email(raw_message(value, value[:300], value, value), [(raw_message("", "").attachments[0],
                                                                           b"abc")],
                          host="pen.example", references=["p0", "p1"], own_copy=False)
        data = serialize(msg)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert sorted(k.lower() for k in parsed.keys()) == sorted(
            ["message-id", "date", "from", "to", "cc", "subject", "in-reply-to", "references", "x-pen-message-id",
             "x-pen-thread-id", "x-pen-folder", "mime-version", "content-type"]), (value[:60], parsed.keys())
        assert "\n" not in parsed["Subject"] and "Bcc" not in [k for k in parsed.keys()]
        assert parsed["References"].split() == ["<p0@pen.example>", "<p1@pen.example>"]
        attachment = next(parsed.iter_attachments())
        assert attachment.get_payload(decode=True) == b"abc"
        assert "/" not in (attachment.get_filename() or "") and "\n" not in (attachment.get_filename() or "")


def test_addresses_from_a_hostile_pen_add_no_recipient_and_no_header(line, pen, hostile, tmp_path):
    """A PEN that answers with address text built to add recipients or headers: only
    valid addr-specs are written, each with its display name quoted or encoded."""
    from tests.client.test_line_mode import HostilePen

    server = HostilePen(pen, hostile)
    injected = "q@a.example, Bcc <evil.example>"
    texts = [v for k, v in hostile["text"].items() if not k.startswith("_")]
    base = dict(server.messages["m-text"], attachments=[], attachment_count=0, bcc=[{"email": "hid@evil.example"}])
    server.messages = {
        "m-comma": dict(base, id="m-comma", **{"from": {"email": injected, "name": "Eve"}},
                        to=[{"email": injected, "name": "Q"},
                            {"email": "me@abc.example", "name": 'Me, "Boss" <boss@evil.example>'},
                            {"email": "ok@abc.example", "name": hostile["text"]["crlf_header_injection"]},
                            {"email": "x@evil.example\r\nBcc: y@evil.example", "name": "X"},
                            {"email": "<z@evil.example>", "name": None}],
                        cc=[{"email": "a@b.example, c@d.example", "name": "Two"}]),
        # Every hostile string as an address (each is refused) beside one real one.
        "m-hostile": dict(base, id="m-hostile", **{"from": {"email": "x@evil.example", "name": "Sender"}},
                          to=[*({"email": t, "name": t[:50]} for t in texts),
                              *({"email": f"{t}@evil.example", "name": "n"} for t in texts),
                              {"email": "me@abc.example", "name": "Me"}], cc=[]),
    }
    server.start()
    try:
        config = line.config("export", server=server.url, email="me@abc.example", name="hostile-addresses")
        done = line("export", "--maildir", str(tmp_path / "Mail"), who="export", config=config)
    finally:
        server.stop()
    assert done.code == 0, done.err
    found = read_maildir(tmp_path / "Mail")
    comma, every = found["m-comma"][1], found["m-hostile"][1]

    def addresses(parsed, name):
        return [(a.display_name, a.addr_spec) for a in parsed[name].addresses]

    assert addresses(comma, "From") == [(f"Eve {injected}", "unknown@invalid")]
    assert addresses(comma, "To") == [('Me, "Boss" <boss@evil.example>', "me@abc.example"),
                                      ("Results Bcc: victim@evil.example", "ok@abc.example")]
    assert comma["Cc"] is None and comma["Bcc"] is None  # no valid Cc; not my own copy
    assert addresses(every, "From") == [("Sender", "x@evil.example")]
    assert addresses(every, "To") == [("Me", "me@abc.example")]
    for parsed in (comma, every):
        assert sorted(k.lower() for k in parsed.keys()) == sorted(
            ["message-id", "date", "from", "to", "subject", "x-pen-message-id", "x-pen-thread-id", "x-pen-folder",
             "mime-version", "content-type", "content-transfer-encoding"])


@pytest.fixture
def four_folders(pen, people):
    """Bob holds one message in each PEN folder: inbox (unread), archive (read), trash
    (read) and his own in sent."""
    a, b = Api(pen, people["a"]), Api(pen, people["b"])
    ids = {"inbox": a.send([b.address], "Stays", "In the inbox.")["id"],
           "archive": a.send([b.address], "Kept", "Archived.")["id"],
           "trash": a.send([b.address], "Binned", "Trashed.")["id"],
           "sent": b.send([a.address], "From Bob", "His own.")["id"]}
    b.patch(ids["archive"], folder="archive", unread=False)
    b.patch(ids["trash"], folder="trash", unread=False)
    return a, b, ids


ALL = ("--folder", "inbox", "--folder", "sent", "--folder", "archive", "--folder", "trash")


def test_by_default_the_trash_is_left_out_as_the_docs_and_the_help_say(line, pen, people, four_folders,
                                                                         tmp_path):
    _a, _b, ids = four_folders
    done = export(line, line.config("export", email=people["b"]), "--maildir", str(tmp_path / "Mail"))
    assert done.code == 0, done.err
    only_mail_in(tmp_path / "Mail")  # .Trash is there, made when missing ...
    where = {box[k]["X-PEN-Message-Id"]: name for name, box in folders_of(tmp_path / "Mail").items()
             for k in box.keys()}
    assert where == {ids["inbox"]: "", ids["sent"]: "Sent", ids["archive"]: "Archive"}  # ... and empty
    line_mode = (Path(__file__).resolve().parents[2] / "docs" / "line-mode.md").read_text(encoding="utf-8")
    assert "It writes the inbox, Sent and the Archive unless told otherwise;\nthe Trash only with " \
           "`--folder trash`" in line_mode
    from tui.export import DEFAULT_FOLDERS

    assert sorted(DEFAULT_FOLDERS) == ["archive", "inbox", "sent"]


def test_each_pen_folder_is_a_maildir_folder(line, pen, people, four_folders, tmp_path):
    a, b, ids = four_folders
    config = line.config("export", email=people["b"])
    maildir = tmp_path / "Mail"
    done = export(line, config, "--maildir", str(maildir), *ALL)
    assert done.code == 0, done.err
    only_mail_in(maildir)
    boxes = folders_of(maildir)
    where = {box[k]["X-PEN-Message-Id"]: name for name, box in boxes.items() for k in box.keys()}
    assert where == {ids["inbox"]: "", ids["sent"]: "Sent", ids["archive"]: "Archive", ids["trash"]: "Trash"}
    trash = boxes["Trash"]
    assert [trash.get_message(k).get_flags() for k in trash.keys()] == ["S"]  # never T: mutt would purge it
    # A second run adds only what is new, into its own folder.
    later = a.send([b.address], "Later", "Archived later.")["id"]
    b.patch(later, folder="archive")
    doc = export(line, config, "--maildir", str(maildir), "--json", *ALL).json()
    assert [(x["id"], x["folder"]) for x in doc["added"]] == [(later, "archive")] and doc["skipped"] == 4
    assert len(folders_of(maildir)["Archive"]) == 2 and len(read_maildir(maildir)) == 5


def test_the_flat_layout_of_earlier_versions_is_migrated(line, pen, people, four_folders, tmp_path):
    _a, _b, ids = four_folders
    config = line.config("export", email=people["b"])
    maildir = tmp_path / "Mail"
    assert export(line, config, "--maildir", str(maildir), *ALL).code == 0
    # Make it what earlier versions wrote: every message in the root, the index and lock there.
    index = index_file(line)
    doc = json.loads(index.read_text())
    (maildir / ".penmail-index.json").write_text(json.dumps({"format": "penmail-maildir-index/1",
                                                             "messages": doc["messages"], "foreign": []}))
    (maildir / ".penmail-export.lock").write_bytes(b"")
    index.unlink()
    for sub in (".Sent", ".Archive", ".Trash"):
        for part in ("cur", "new"):
            for name in os.listdir(maildir / sub / part):
                os.rename(maildir / sub / part / name, maildir / part / name)
    assert len(mailbox.Maildir(str(maildir), factory=None)) == 4

    done = export(line, config, "--maildir", str(maildir), "--json", *ALL)
    assert done.code == 0, done.err
    assert done.json()["migrated"] == 3 and done.json()["count"] == 0 and done.json()["skipped"] == 4
    assert done.err.strip() == (f"Moved 3 messages of {maildir} from the old flat layout into its folders .Sent, "
                                f".Archive and .Trash (Maildir++); penmail's index is now in its state folder.")
    only_mail_in(maildir)  # the old index and lock are gone
    found = read_maildir(maildir)  # each in its folder, once
    assert set(found) == set(ids.values())
    assert found[ids["archive"]][0].get_flags() == "S" and found[ids["inbox"]][0].get_subdir() == "new"
    again = export(line, config, "--maildir", str(maildir), *ALL)
    assert again.lines == [f"Exported 0 new messages (0 attachments) to {maildir}; 4 were there already."]
    assert again.err == ""


def test_notmuch_reads_the_tree(line, pen, people, four_folders, tmp_path):
    import shutil
    import subprocess

    if not shutil.which("notmuch"):
        pytest.skip("notmuch is not installed (apt-get install notmuch)")
    _a, _b, ids = four_folders
    maildir = tmp_path / "Mail"
    assert export(line, line.config("export", email=people["b"]), "--maildir", str(maildir), *ALL).code == 0
    settings = tmp_path / "notmuch-config"
    settings.write_text(f"[database]\npath={maildir}\n[user]\nname=Bob\nprimary_email={people['b']}\n"
                        f"[new]\ntags=new\n[maildir]\nsynchronize_flags=true\n")
    env = {**os.environ, "NOTMUCH_CONFIG": str(settings), "HOME": str(tmp_path)}

    def notmuch(*args: str) -> str:
        done = subprocess.run(["notmuch", *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    added = notmuch("new")
    assert "Added 4 new messages" in added and "non-mail" not in added, added
    for folder, maildir_folder in (("inbox", '""'), ("sent", ".Sent"), ("archive", ".Archive"), ("trash", ".Trash")):
        found = notmuch("search", "--output=messages", f"folder:{maildir_folder}").split()
        assert found == [f"id:{ids[folder]}@127.0.0.1"], (folder, found)
    assert notmuch("count", "tag:unread").strip() == "1"  # only the inbox's message is unread
