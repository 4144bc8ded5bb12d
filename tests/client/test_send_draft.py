"""Line mode sends a draft the TUI's way (tui/writing/sender.py), as the real command against the
real PEN: after answers lost on every try, `send --draft` sends the same upload ids under
the same key (one message, no idempotency_key_reused); a guest's message the PEN will always
refuse says what to change instead of "send it again"; `penmail drafts` lists, shows and
deletes drafts, plain and --json, with the exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from tests.client.test_line_mode import REPO, Done, Line, link_for, subject
from tests.conftest import PASSWORD
from tui.writing.sender import SEND_TRIES


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


def drafts_dir(line, who: str = "ann"):
    return line.tmp / f"state-{who}" / "drafts"


def losing(line, *args: str, lose: int, stdin: str = "") -> Done:
    """penmail ARGS as Ann, the PEN's answers to the first `lose` sends lost on the way back."""
    env = line.env("ann", None, PASSWORD, None) | {"PENMAIL_TEST_LOSE": str(lose)}
    done = subprocess.run([sys.executable, "-m", "tests.client.lose_answers", *args], input=stdin.encode(), check=False,
                          capture_output=True, env=env, cwd=REPO, timeout=120)
    return Done(done.returncode, done.stdout.decode(), done.stderr.decode())


def bob_has(pen, subj: str) -> list[dict]:
    with pen.as_user("bob") as c:
        items = c.get("/messages", params={"q": subj}).json()["items"]
        return [c.get(f"/messages/{m['id']}").json() for m in items if m["subject"] == subj]


def test_after_answers_lost_on_every_try_send_draft_sends_the_same_uploads_once(line, pen):
    subj = subject("lost answer")
    agenda = line.tmp / "agenda.txt"
    agenda.write_bytes(b"1. Only once\n" * 300)
    failed = losing(line, "send", "--to", "bob@abc.example", "--subject", subj, "--attach", str(agenda),
                    stdin="See the agenda.", lose=SEND_TRIES)
    assert failed.code == 1, failed
    sentence = failed.one_sentence()
    draft_id = re.search(r"kept as draft ([0-9a-f]{32})", sentence).group(1)
    assert "it may have reached the PEN; sending the draft again never sends it twice" in sentence
    assert f"penmail send --draft {draft_id}" in sentence
    kept = json.loads((drafts_dir(line) / f"{draft_id}.json").read_text())
    assert list(kept["uploads"]) == [str(agenda)]  # the upload id is kept, not only the path
    upload_id = kept["uploads"][str(agenda)]["id"]

    done = line("send", "--json", "--draft", draft_id)
    assert done.code == 0, done.err  # was: idempotency_key_reused (the file uploaded again)
    assert [a["id"] for a in done.json()["attachments"]] == [upload_id]
    assert not (drafts_dir(line) / f"{draft_id}.json").exists()
    [got] = bob_has(pen, subj)
    assert [a["filename"] for a in got["attachments"]] == ["agenda.txt"]
    # Until its one notification is sent (nothing is left that could send a second), then
    # the sink has exactly one.
    pen.assert_notified_once("ann", subj, ["bob@abc.example"])


def test_a_lost_answer_is_tried_again_at_once_with_the_same_uploads(line, pen):
    subj = subject("lost once")
    notes = line.tmp / "notes.txt"
    notes.write_text("notes\n")
    done = losing(line, "send", "--json", "--to", "bob@abc.example", "--subject", subj, "--attach", str(notes),
                  stdin="Once.", lose=1)
    assert done.code == 0, done.err
    assert len(bob_has(pen, subj)) == 1 and list(drafts_dir(line).glob("*.json")) == []


def test_a_guests_refused_message_says_what_to_change(line, pen, tmp_path):
    guest = f"guest-{uuid.uuid4().hex[:8]}@elsewhere.example"
    subj = subject("for a guest")
    assert line("send", "--to", guest, "--subject", subj, stdin="Welcome, guest.").code == 0
    config = tmp_path / "guest.toml"
    config.write_text(f'ca_file = "{pen.ca_file}"\n')
    done = line("open", link_for(pen, guest, subj), "--print", who="guest", config=config, password=None,
                stdin="Gwen Guest\nlong password\nlong password\n")
    assert done.code == 0, done.err

    stranger = "someone@elsewhere.example"
    done = line("send", "--to", stranger, "--subject", "Hello", who="guest", config=config,
                password="long password", stdin="Hi.")
    assert done.code == 1, done
    sentence = done.one_sentence()
    draft_id = re.search(r"kept as draft ([0-9a-f]{32})", sentence).group(1)
    assert f"{stranger} is neither" in sentence
    assert "the PEN will refuse this message as it is, so change that and send it anew" in sentence
    assert f"penmail drafts delete {draft_id}" in sentence
    assert "send --draft" not in sentence  # no advice that can never work
    again = line("send", "--draft", draft_id, who="guest", config=config, password="long password")
    assert again.code == 1 and "send --draft" not in again.one_sentence()
    done = line("drafts", "delete", draft_id, who="guest", config=config, password="long password")
    assert done.code == 0 and list(drafts_dir(line, "guest").glob("*.json")) == []


def test_drafts_lists_shows_and_deletes_plain_and_json(line, pen):
    closed = line.config("ann", server="https://127.0.0.1:9", name="closed")
    ids = []
    for n in (1, 2):
        failed = line("send", "--to", "bob@abc.example", "--cc", "cat@abc.example", "--subject", f"Kept {n}",
                      stdin=f"Text {n}.\nSecond line.", config=closed)
        assert failed.code == 1
        ids.append(re.search(r"kept as draft ([0-9a-f]{32})", failed.err).group(1))
    # Drafts belong to an account: the closed config's server is another account's.
    done = line("drafts", config=closed)
    assert done.code == 0, done.err
    rows = [row.split("\t") for row in done.lines]
    assert [r[0] for r in rows] == ids[::-1]  # newest first
    assert rows[0][2:] == ["bob@abc.example, cat@abc.example", "-", "Kept 2"]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d$", rows[0][1])
    assert line("drafts").lines == []  # Ann on the real PEN has none of these

    doc = line("drafts", "--json", config=closed).json()
    assert doc["count"] == 2 and [d["id"] for d in doc["items"]] == ids[::-1]
    assert set(doc["items"][0]) == {"id", "updated_at", "to", "cc", "bcc", "subject", "attachments",
                                    "forwarded_attachments", "in_reply_to", "forward_of"}

    shown = line("drafts", "show", ids[0], config=closed)
    assert shown.code == 0, shown.err
    assert shown.lines[:2] == ["To:      bob@abc.example", "Cc:      cat@abc.example"]
    assert f"Draft:   {ids[0]}" in shown.lines and shown.lines[-2:] == ["Text 1.", "Second line."]
    one = line("drafts", "show", "--json", ids[0], config=closed).json()
    assert one["body"] == "Text 1.\nSecond line." and one["subject"] == "Kept 1"

    missing = "f" * 32
    done = line("drafts", "show", missing, config=closed)
    assert done.code == 4 and "no draft" in done.one_sentence()
    done = line("drafts", "delete", ids[0], missing, config=closed)
    assert done.code == 4 and len(line("drafts", config=closed).lines) == 2  # nothing deleted
    done = line("drafts", "delete", config=closed)
    assert done.code == 2 and "Name the draft" in done.one_sentence()
    done = line("drafts", "delete", "--json", ids[0], config=closed)
    assert done.code == 0 and done.json() == {"deleted": [ids[0]]}
    done = line("drafts", "delete", ids[1], config=closed)
    assert done.lines == [f'Deleted draft {ids[1]} ("Kept 2").']
    assert line("drafts", "--json", config=closed).json() == {"count": 0, "items": []}


def test_send_draft_uploads_again_only_what_the_pen_has_expired(line, pen):
    """A kept draft with two files: one upload the PEN still has, one it has expired (an id it
    does not know). Only the expired one goes up again, under the same key."""
    from tui.drafts import Draft, DraftStore, account_key, upload_record

    kept, gone = line.tmp / "kept.txt", line.tmp / "gone.txt"
    kept.write_bytes(b"still on the PEN\n")
    gone.write_bytes(b"expired on the PEN\n")
    with pen.as_user("ann") as c:
        answer = c.post("/uploads", params={"filename": "kept.txt"}, content=kept.read_bytes(),
                        headers={"Content-Type": "text/plain"})
        assert answer.status_code == 201, answer.text
        kept_id = answer.json()["id"]
    subj = subject("expired upload")
    draft = Draft(to=["bob@abc.example"], subject=subj, body="Two files.", attachments=[str(kept), str(gone)],
                  uploads={str(kept): upload_record(kept_id, kept.stat().st_size, kept.stat().st_mtime_ns),
                           str(gone): upload_record("expired" + uuid.uuid4().hex, gone.stat().st_size,
                                                    gone.stat().st_mtime_ns)},
                  account=account_key(pen.process.url, "ann@abc.example"))
    DraftStore(drafts_dir(line)).save(draft)
    done = line("send", "--json", "--draft", draft.id)
    assert done.code == 0, done.err
    sent = done.json()["attachments"]
    assert [a["filename"] for a in sent] == ["kept.txt", "gone.txt"]
    assert sent[0]["id"] == kept_id and not sent[1]["id"].startswith("expired")  # only the expired one again
    [got] = bob_has(pen, subj)
    assert [a["filename"] for a in got["attachments"]] == ["kept.txt", "gone.txt"]
