"""tui.bulk's sentences and tags, and the Drafts folder's pages (tui.drafts.folder), on
real objects and a real draft folder on disk."""

from __future__ import annotations

from datetime import UTC, datetime

from tui.bulk import Outcome, Tags, sentence
from tui.drafts import Draft, DraftStore, account_key
from tui.drafts.folder import draft_page
from tui.pen_client import Address, Summary


def summary(n: int, subject: str | None = None) -> Summary:
    return Summary(id=f"m{n}", thread_id="t", folder="inbox", sender=Address("bob@abc.example"), to=(), cc=(),
                   subject=f"Message {n}" if subject is None else subject, sent_at=datetime(2026, 1, 1, tzinfo=UTC),
                   unread=True, attachment_count=0, size=1, snippet="")


def test_one_sentence_names_the_count_and_at_most_three_failures():
    done = [summary(n) for n in range(3)]
    assert sentence(Outcome(done), "Moved {n} to Trash", then="press z to undo") == \
        "Moved 3 messages to Trash; press z to undo."
    failed = [(summary(n), "The message was not found.") for n in range(3, 8)]
    said = sentence(Outcome(done, failed), "Moved {n} to Trash", then="press z to undo")
    assert said == ("Moved 3 of 8 messages to Trash; 5 failed: \u201cMessage 3\u201d (The message was not found), "
                    "\u201cMessage 4\u201d (The message was not found), \u201cMessage 5\u201d (The message was not "
                    "found) and 2 more.")
    # one message: its subject; one that failed: the PEN's sentence alone
    assert sentence(Outcome([summary(1, "")]), "Deleted {n} for good") == "Deleted \u201c(no subject)\u201d for good."
    assert sentence(Outcome([], [(summary(1), "The PEN is busy; try again.")]), "Moved {n} to Trash") == \
        "The PEN is busy; try again."
    # a subject with control characters and line breaks stays on one line
    assert "\n" not in sentence(Outcome(done, [(summary(9, "a\nb\x1b[31m"), "x\ny")]), "Moved {n} to Trash")


def test_tags_toggle_add_refresh_and_clear():
    tags = Tags()
    assert tags.toggle(summary(1)) and not tags.toggle(summary(1)) and not tags
    assert tags.add([summary(1), summary(2)]) == 2 and tags.add([summary(2), summary(3)]) == 1
    read = Summary(**{**summary(2).__dict__, "unread": False})
    tags.refresh([read, summary(9)])
    assert [s.unread for s in tags.items] == [True, False, True] and "m9" not in tags
    tags.discard(["m1"])
    assert tags.ids == {"m2", "m3"} and tags.clear() == 2 and not tags


def test_the_drafts_folder_pages_from_both_ends(tmp_path):
    store = DraftStore(tmp_path / "drafts")
    mine, theirs = account_key("https://pen.example", "ann@abc.example"), account_key("https://pen.example", "b@x")
    for n in range(5):
        draft = Draft(to=[f"Person {n} <p{n}@abc.example>"], subject=f"Draft {n}", account=mine)
        store.save(draft)
    store.save(Draft(subject="Not ann's", account=theirs))
    me = Address("ann@abc.example", "Ann")
    first = draft_page(store, mine, me, None, 2)
    assert [s.subject for s in first.items] == ["Draft 4", "Draft 3"] and first.total == 5
    second = draft_page(store, mine, me, first.next_cursor, 2)
    last = draft_page(store, mine, me, second.next_cursor, 2)
    assert [s.subject for s in second.items + last.items] == ["Draft 2", "Draft 1", "Draft 0"]
    assert last.next_cursor is None
    oldest = draft_page(store, mine, me, None, 2, order="oldest")
    assert [s.subject for s in oldest.items] == ["Draft 0", "Draft 1"]
    row = first.items[0]
    assert row.folder == "drafts" and row.sender == me and row.to == (Address("p4@abc.example", "Person 4"),)
    assert draft_page(store, None, me, None, 10).total == 0  # nobody signed in: no drafts shown
