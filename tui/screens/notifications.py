"""Who was notified of a message the person sent: each recipient's notification (to, cc or
bcc; queued, sending, sent, deferred, failed, bounced, suppressed or cancelled, as words; when
the recipient first opened it; attempts; the mail server's reply for a failure or a bounce, or
why a suppressed one was not sent), fetched in a worker and kept up to date from the event
stream (``notification.updated``, ``message.opened``); the failed and suppressed ones can be
sent again."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable

from tui.pen_client import Notification, PenClient, PenError, parse_time
from tui.safe_text import one_line
from tui.screens.messages import PenEvent
from tui.widgets.footer import KeyFooter
from tui.widgets.notification_table import PENDING, RESENDABLE, NotificationTable, detail, summary
from tui.widgets.safe_static import SafeStatic


def _names(items: list[Notification], most: int = 3) -> str:
    names = [one_line(n.recipient.email, 80) for n in items]
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class NotificationsScreen(Screen):
    AUTO_FOCUS = "#notification-table"
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="notifications.back"),
        Binding("r", "resend", "Resend failed", id="notifications.resend"),
        Binding("f5,ctrl+r", "reload", "Reload", show=False, id="notifications.reload"),
        Binding("f1,question_mark", "app.help", "Help", id="notifications.help"),
    ]
    REFETCH_DELAY = 0.25  # events come in bursts (sending, then sent): one fetch per burst
    POLL_SECONDS = 15.0  # while something is pending, in case the event stream was down

    def __init__(self, client: PenClient, message_id: str, subject: str = "") -> None:
        super().__init__()
        self.client, self.message_id, self.subject = client, message_id, subject
        self.loaded = False
        self._refetch: Timer | None = None
        self._events = 0  # events seen so far: a fetch that overlapped one may be stale

    def compose(self) -> ComposeResult:
        yield SafeStatic(f"Notifications of: {one_line(self.subject) or '(no subject)'}", id="notifications-title")
        yield SafeStatic("Loading who was notified ...", id="notifications-summary")
        yield NotificationTable(id="notification-table")
        yield SafeStatic("", id="notification-detail")
        yield SafeStatic("", id="notifications-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._fetch()
        self.set_interval(self.POLL_SECONDS, self._poll)

    @property
    def table(self) -> NotificationTable:
        return self.query_one(NotificationTable)

    def say(self, text: str) -> None:
        self.query_one("#notifications-status", SafeStatic).show(text)

    # ------------------------------------------------------------ data

    @work(exclusive=True, group="notifications", exit_on_error=False)
    async def _fetch(self) -> None:
        seen = self._events
        try:
            items = await self.client.notifications(self.message_id)
        except PenError as exc:
            self.say(exc.message)
            return
        self._show(items, seen)

    def _show(self, items: list[Notification], seen: int) -> None:
        """Show a fetched list, unless an event came while it was on its way: it may then be
        older than the rows already are, and the fetch that event asked for follows."""
        if self.loaded and seen != self._events:
            return
        self.loaded = True
        self.table.show_notifications(items)
        self._describe()

    def _describe(self) -> None:
        items = self.table.items
        tail = " Updated as it happens." if any(n.status in PENDING for n in items) else ""
        if any(n.status == "failed" for n in items):
            tail += " Press r to send the failed ones again."
        if any(n.status == "suppressed" for n in items):
            tail += " Suppressed: the address bounced for good before, so nothing was sent."
        self.query_one("#notifications-summary", SafeStatic).show(f"{summary(items)}.{tail}")
        highlighted = self.table.highlighted_notification
        self.query_one("#notification-detail", SafeStatic).show(detail(highlighted) if highlighted else "")

    def _poll(self) -> None:
        if self.loaded and any(n.status in PENDING for n in self.table.items):
            self._fetch()

    @on(PenEvent)
    def _pen_event(self, message: PenEvent) -> None:
        self.pen_event(message.event)

    def pen_event(self, event) -> None:
        """From the app's event stream: a notification of this message changed, or one of
        its recipients opened it."""
        if str(event.data.get("message_id", "")) != self.message_id:
            return
        if event.kind == "message.opened":
            self._opened(event.data)
            return
        if event.kind != "notification.updated":
            return
        self._events += 1
        recipient, status = event.data.get("recipient"), event.data.get("status")
        email = recipient.get("email") if isinstance(recipient, dict) else recipient
        if isinstance(email, str) and isinstance(status, str) and self.loaded:
            if self.table.set_status(email, status):
                self._describe()
        if self._refetch is None:  # the whole row (attempts, reply) comes with a fetch
            self._refetch = self.set_timer(self.REFETCH_DELAY, self._refetch_now)

    def _opened(self, data: dict) -> None:
        recipient, when = data.get("recipient"), data.get("opened_at")
        email = recipient.get("email") if isinstance(recipient, dict) else recipient
        try:
            opened_at = parse_time(when) if isinstance(when, str) else None
        except ValueError:
            opened_at = None
        if not self.loaded or not isinstance(email, str) or opened_at is None or opened_at.tzinfo is None:
            self._fetch()  # the list says (a fetch under way may be older than this event)
        elif self.table.set_opened(email, opened_at):
            self._describe()

    def _refetch_now(self) -> None:
        self._refetch = None
        self._fetch()

    @on(DataTable.RowHighlighted, "#notification-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe()

    # ------------------------------------------------------------ actions

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self._fetch()

    def action_resend(self) -> None:
        if not self.loaded:
            self.say("The list is still loading.")
            return
        failed = [n for n in self.table.items if n.status in RESENDABLE]
        if not failed:
            self.say("No notification has failed, so there is nothing to send again.")
            return
        self._resend(failed)

    @work(exclusive=True, group="notifications-resend", exit_on_error=False)
    async def _resend(self, failed: list[Notification]) -> None:
        self.say(f"Sending again to {_names(failed)} ...")
        seen = self._events
        try:
            items = await self.client.resend(self.message_id)
        except PenError as exc:
            self.say(exc.message)
            return
        wanted = {(n.kind, n.recipient.email.lower()) for n in failed}
        again = [n for n in items if (n.kind, n.recipient.email.lower()) in wanted and n.status not in RESENDABLE]
        self._show(items, seen)
        if again:
            self.say(f"Queued again for {_names(again)}; the rows follow as the mail server answers.")
        else:
            self.say("Nothing was waiting to be sent again; the list is up to date.")
