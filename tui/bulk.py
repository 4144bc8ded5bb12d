"""Tagged messages and the actions on many at once, and the undo of the last move. No
Textual here: the mailbox screen keeps a ``Tags`` and runs ``apply`` in a worker.

A bulk action is one request per message, in order; each failure is kept with the PEN's
sentence, and ``sentence`` says in one sentence how many were done and which failed. A
move (to trash, to the archive, back to the inbox) remembers where each message was, so
``undo`` can put them back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from tui.pen_client import PenClient, PenError, Summary
from tui.safe_text import one_line

__all__ = ["LastMove", "Outcome", "Tags", "TAG_MARK", "MAX_TAGGED", "apply", "folder_name", "matching",
           "plural", "sentence", "undo"]

TAG_MARK = "*"  # the character a tagged row shows (not colour alone)
MAX_TAGGED = 2000  # "tag all that match" stops here: a bulk action is one request a message
FOLDER_NAMES = {"inbox": "Inbox", "sent": "Sent", "archive": "Archive", "trash": "Trash", "drafts": "Drafts"}


def folder_name(folder: str) -> str:
    return FOLDER_NAMES.get(folder, one_line(folder, 40).capitalize())


def plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


class Tags:
    """The tagged messages of the list shown, by id (with their summaries, to act on them
    when they are out of sight)."""

    def __init__(self) -> None:
        self._items: dict[str, Summary] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._items

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._items)

    @property
    def items(self) -> list[Summary]:
        return list(self._items.values())

    def toggle(self, summary: Summary) -> bool:
        """Tag or untag; True when it is tagged now."""
        if summary.id in self._items:
            del self._items[summary.id]
            return False
        self._items[summary.id] = summary
        return True

    def add(self, summaries: Iterable[Summary]) -> int:
        """Tag these; how many were not tagged before."""
        before = len(self._items)
        for s in summaries:
            self._items.setdefault(s.id, s)
        return len(self._items) - before

    def refresh(self, summaries: Iterable[Summary]) -> None:
        """Keep the newer summaries of tagged messages (read state changed, say)."""
        for s in summaries:
            if s.id in self._items:
                self._items[s.id] = s

    def discard(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._items.pop(i, None)

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        return n


@dataclass
class Outcome:
    """What a bulk action did: the messages done (as the PEN answered, when it did) and the
    ones that failed, each with the PEN's sentence."""

    done: list[Summary] = field(default_factory=list)
    failed: list[tuple[Summary, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.done) + len(self.failed)


async def apply(targets: Iterable[Summary], act: Callable[[Summary], Awaitable[Summary | None]]) -> Outcome:
    """``act`` on each target in turn (one request each); a failure does not stop the rest."""
    outcome = Outcome()
    for summary in targets:
        try:
            result = await act(summary)
        except PenError as exc:
            outcome.failed.append((summary, exc.message))
            continue
        outcome.done.append(result if result is not None else summary)
    return outcome


def sentence(outcome: Outcome, verb: str, what: str = "message", then: str = "") -> str:
    """One sentence: "Moved 3 messages to Trash." or "Moved 2 of 3 messages to Trash; 1
    failed: “Lab results” (The message was not found.)." ``verb`` reads "Moved {n} to
    Trash": the count goes where ``{n}`` is (for one message, its subject; when that one
    failed, the PEN's sentence alone)."""
    done, total = len(outcome.done), outcome.total
    if total == 1 and outcome.failed:
        return one_line(outcome.failed[0][1], 300)  # one message: the PEN's own sentence
    if total == 1:
        count = f"\u201c{one_line(outcome.done[0].subject, 60) or '(no subject)'}\u201d"
    else:
        count = plural(total, what) if done == total else f"{done} of {plural(total, what)}"
    text = verb.format(n=count)
    if outcome.failed:
        shown = [f"\u201c{one_line(s.subject, 40) or '(no subject)'}\u201d ({one_line(why, 80).rstrip('.')})"
                 for s, why in outcome.failed[:3]]
        more = len(outcome.failed) - len(shown)
        text += f"; {len(outcome.failed)} failed: {', '.join(shown)}{f' and {more} more' if more else ''}"
    elif then:
        text += f"; {then}"
    return text + "."


@dataclass(frozen=True)
class LastMove:
    """The last move, to undo: where it went, and where each message came from."""

    to: str
    moved: tuple[tuple[Summary, str], ...]  # (the message as it is now, the folder it was in)


MOVABLE = ("inbox", "archive", "trash")  # the folders the PEN moves a message into (not Sent)
NOT_BACK = "The PEN moves no message into Sent, so it stays in {to}; move it to the inbox or the archive."


async def undo(client: PenClient, last: LastMove) -> Outcome:
    """Put the messages of the last move back where they were (one request each); one
    that came from Sent cannot go back there, and is a failure that says so."""
    back = {s.id: folder for s, folder in last.moved}
    outcome = await apply([s for s, folder in last.moved if folder in MOVABLE],
                          lambda s: client.update_message(s.id, folder=back[s.id]))
    outcome.failed += [(s, NOT_BACK.format(to=folder_name(last.to))) for s, folder in last.moved
                       if folder not in MOVABLE]
    return outcome


async def matching(client: PenClient, folder: str, q: str | None, limit: int = MAX_TAGGED) -> tuple[list[Summary], int]:
    """Every message of ``folder`` that the search ``q`` finds (all of the folder without
    one), up to ``limit``; and how many there are in all."""
    found: list[Summary] = []
    cursor: str | None = None
    total = 0
    while len(found) < limit:
        page = await client.list_messages(folder, limit=min(200, limit - len(found)), cursor=cursor, q=q or None)
        found.extend(page.items)
        total = page.total
        cursor = page.next_cursor
        if not cursor or not page.items:
            break
    return found, total
