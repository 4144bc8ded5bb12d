"""The typed messages screens and the app talk through (Textual ``Message``s, handled with
``@on``), server events included: a screen posts one and the app, which owns the session
and the screen stack, acts on it; the app hands each server event to every screen as a
:class:`PenEvent`. Textual is imported here, so it lives in screens/."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from textual.screen import Screen

    from tui.drafts import Draft
    from tui.pen_client import Event, Summary
    from tui.pen_client import Message as PenMessage
    from tui.signin.session import Session

__all__ = [
    "NOTICE_SECONDS",
    "ComposeRequested",
    "DraftResumeRequested",
    "EventsWanted",
    "MessageOpenRequested",
    "NotificationsRequested",
    "PenEvent",
    "SignedIn",
    "SummaryChanged",
]

# How long a notice of penmail's stays on screen (Textual's own default is 5 s). A screen says
# something worth a notice with ``self.notify(text, markup=False, timeout=NOTICE_SECONDS)``:
# markup=False marks the text as untrusted, and the app cleans it (tui.safe_text.one_line).
NOTICE_SECONDS = 8


class SignedIn(Message):
    """The sign-in screen signed in: the app shows the mailbox."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


class EventsWanted(Message):
    """The mailbox drew its first page (or failed to): time to follow the event stream."""


class MessageOpenRequested(Message):
    """Open this message in the reader; ``instead_of``: in place of that screen (the reader
    moving along a thread, so the screens do not pile up)."""

    def __init__(self, summary: Summary, instead_of: Screen | None = None) -> None:
        super().__init__()
        self.summary, self.instead_of = summary, instead_of


class SummaryChanged(Message):
    """A message changed (read, unread); ``moved``: it left its folder (``before``), so the
    list reloads, and the mailbox can undo the move."""

    def __init__(self, summary: Summary, moved: bool = False, before: str | None = None) -> None:
        super().__init__()
        self.summary, self.moved, self.before = summary, moved, before


class ComposeRequested(Message):
    """Write a new message, or a reply, reply-all or forward of ``message``."""

    def __init__(self, kind: str = "new", message: PenMessage | None = None) -> None:
        super().__init__()
        self.kind, self.message = kind, message


class DraftResumeRequested(Message):
    """Go on writing this draft."""

    def __init__(self, draft: Draft) -> None:
        super().__init__()
        self.draft = draft


class NotificationsRequested(Message):
    """Show who was notified of this sent message."""

    def __init__(self, message_id: str, subject: str = "") -> None:
        super().__init__()
        self.message_id, self.subject = message_id, subject


class PenEvent(Message, bubble=False):
    """A server event (``tui.pen_client.Event``), handed by the app to every screen."""

    def __init__(self, event: Event | Any) -> None:
        super().__init__()
        self.event = event
