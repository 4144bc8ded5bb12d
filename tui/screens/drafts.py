"""Drafts left behind (by a crash, a lost connection, or escape) offered back after
sign-in: a list of subject, recipients and when each was saved; enter resumes one, d
discards one (after y to the question every destructive key asks), escape leaves them for
later, q quits. tui/screens/drafts_offer.py looks for them, and imports this only when there
are some."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.compose import format_date
from tui.drafts import Draft, DraftStore
from tui.safe_text import one_line, safe_text
from tui.screens.messages import NOTICE_SECONDS, DraftResumeRequested
from tui.widgets.cursor_list import CursorOptionList
from tui.widgets.footer import KeyFooter
from tui.widgets.safe_static import SafeStatic


def draft_row(draft: Draft) -> Text:
    """Two lines: the subject; then when it was saved, and to whom."""
    subject = one_line(draft.subject, 60) or "(no subject)"
    people = one_line(", ".join(draft.to + draft.cc + draft.bcc), 36) or "nobody yet"
    when = format_date(draft.updated_at) or "at an unknown time"
    row = safe_text(subject)
    row.append("\n")
    row.append(safe_text(f"saved {when}, to {people}", style="dim"))
    return row


class DraftsScreen(ModalScreen[None]):


    BINDINGS = [
        # priority: the list would take enter for its own "select"
        Binding("enter", "resume", "Resume draft", id="drafts.resume", priority=True),
        Binding("d,delete", "discard", "Discard draft", id="drafts.discard"),
        Binding("escape", "later", "Later", id="drafts.later"),
        Binding("q", "app.quit", "Quit", id="drafts.quit"),
        Binding("f1", "app.help", "Help", id="drafts.help"),
    ]

    def __init__(self, store: DraftStore, drafts: list[Draft]) -> None:
        super().__init__()
        self.store, self.drafts = store, list(drafts)

    def compose(self) -> ComposeResult:
        with Vertical(id="drafts-box"):
            yield SafeStatic("", id="drafts-title")
            yield CursorOptionList(id="drafts-list")
            yield SafeStatic("enter resumes, d discards, escape keeps them for later, q quits", id="drafts-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._show()
        self.query_one(OptionList).focus()

    def _show(self) -> None:
        n = len(self.drafts)
        self.query_one("#drafts-title", SafeStatic).show(
            f"{n} unsent draft{'s' if n != 1 else ''} (escape: later)")
        options = self.query_one(OptionList)
        keep = options.highlighted or 0
        options.clear_options()
        options.add_options([Option(draft_row(d), id=d.id) for d in self.drafts])
        if self.drafts:
            options.highlighted = min(keep, len(self.drafts) - 1)

    def _say(self, text: str) -> None:
        self.query_one("#drafts-status", SafeStatic).show(text)

    def _current(self) -> Draft | None:
        index = self.query_one(OptionList).highlighted
        return self.drafts[index] if index is not None and 0 <= index < len(self.drafts) else None

    @on(OptionList.OptionSelected)
    def _chosen(self) -> None:
        self.action_resume()

    def action_resume(self) -> None:
        draft = self._current()
        if draft is None:
            return
        self.dismiss(None)
        self.app.post_message(DraftResumeRequested(draft))  # this screen is gone: straight to the app

    def action_discard(self) -> None:
        from tui.screens.confirm import ConfirmScreen

        draft = self._current()
        if draft is None:
            return
        subject = one_line(draft.subject, 60) or "(no subject)"

        def answered(yes: bool | None) -> None:
            if not yes or draft not in self.drafts:
                return
            self.store.delete(draft.id)
            self.drafts.remove(draft)
            if not self.drafts:
                self.dismiss(None)
                self.notify(f"Discarded the draft \u201c{subject}\u201d; there are no other drafts.", title="Drafts",
                            timeout=NOTICE_SECONDS, markup=False)
                return
            self._show()
            self._say(f"Discarded the draft \u201c{subject}\u201d.")

        self.app.push_screen(ConfirmScreen(f"Discard the draft \u201c{subject}\u201d for good?",
                                           yes="Yes, discard it"), answered)

    def action_later(self) -> None:
        self.dismiss(None)
