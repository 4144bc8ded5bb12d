"""Each recipient's notification of one message as a table: recipient, to/cc/bcc, status
as a word (queued, sending, sent, deferred, failed, bounced, suppressed, cancelled; withdrawn
once the sender withdrew it from that recipient), when the recipient first opened the message
("not yet" until then), attempts, and the mail server's reply for a failure or a bounce (or why
a suppressed one was not sent). Cells
are safe Text; the highlighted row carries a ">" and the terminal cursor (DataTable sets
neither)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from textual.geometry import Offset
from textual.widgets import DataTable

from tui.pen_client import Notification
from tui.safe_text import one_line, safe_text
from tui.text.format import NOTIFICATION_PENDING, long_date, short_date
from tui.widgets.vim_keys import moving_bindings

COLUMNS = (("mark", " "), ("recipient", "Recipient"), ("kind", "Kind"), ("status", "Status"),
           ("opened", "Opened"), ("attempts", "Attempts"), ("reply", "Server's reply"))
# "cancelled" and "withdrawn" are the longest statuses but "suppressed" (the column grows for
# it, _fit), "27 Nov 09:30" the longest opened time.
FIXED = {"mark": 1, "kind": 4, "status": 9, "opened": 12, "attempts": 8}
PENDING = NOTIFICATION_PENDING
RESENDABLE = ("failed", "suppressed")  # what r sends again (the PEN's resend without recipients)
PROBLEMS = ("failed", "bounced", "suppressed")  # shown bold (and always as their word)
# How the PEN marks what a bounce said as the remote server's words (its own never follow).
BOUNCE_SAID = "the recipient's mail server said: "
NOT_OPENED = "not yet"


def opened_text(n: Notification, now: datetime | None = None) -> str:
    """When the recipient first opened it: "09:30" today, "27 Nov 09:30", "2025-11-27"; or
    "not yet"."""
    if n.opened_at is None:
        return NOT_OPENED
    day = short_date(n.opened_at, now)
    clock = n.opened_at.astimezone().strftime("%H:%M")
    return day if day == clock or len(day) > 6 else f"{day} {clock}"


def recipient_text(n: Notification, max_len: int = 48) -> str:
    """"Name <address>", or the address alone when both do not fit (the address is the key)."""
    full = one_line(str(n.recipient))
    if len(full) > max_len and n.recipient.name:
        full = one_line(n.recipient.email)
    return one_line(full, max_len) or "(no address)"


def status_text(n: Notification) -> str:
    """The status as the table shows it: "withdrawn" once the sender withdrew the message
    from this recipient (the sentence under the table keeps the delivery's status)."""
    return "withdrawn" if n.revoked_at is not None else one_line(n.status)


def reply_text(n: Notification) -> str:
    """The server's reply, shown only while it explains the status (a failure, a delay, a
    bounce, or a delay that the recipient's mail server reported after taking it)."""
    return one_line(n.last_error or "", 200) if n.status in ("failed", "deferred", "bounced", "sent",
                                                              "suppressed") else ""


def detail(n: Notification) -> str:
    """One sentence about one recipient's notification."""
    who = f"{recipient_text(n, 200)} ({one_line(n.kind)})"
    tries = f"{n.attempts} attempt{'s' if n.attempts != 1 else ''}"
    reply = reply_text(n)
    answered = f"; the mail server answered: {reply}" if reply else ""
    what = {
        "queued": "waiting to be sent",
        "sending": "being handed to the mail server now",
        "sent": f"sent; the mail server took it after {tries}" + (f"; since then: {reply}" if reply else ""),
        "bounced": f"bounced: sent after {tries}, then returned as undeliverable by the recipient's "
                   f"mail server" + (f", which said: {said}" if (said := reply.removeprefix(BOUNCE_SAID)) else ""),
        "deferred": f"deferred after {tries}, and tried again later{answered}",
        "failed": f"failed after {tries}{answered}; press r to send it again",
        "suppressed": f"not sent: {reply or 'the address is on the suppression list'}; once an administrator "
                      "of the PEN takes the address off the list, press r to send it",
        "cancelled": "cancelled: you withdrew the message before it went out",
    }.get(n.status, f"status {one_line(n.status)}{answered}")
    opened = f"; opened {long_date(n.opened_at)}" if n.opened_at else ""
    withdrawn = f"; you withdrew it on {long_date(n.revoked_at)}" if n.revoked_at and n.status != "cancelled" \
        else ""
    return f"{who}: {what}{opened}{withdrawn}."


def summary(items: list[Notification]) -> str:
    """"3 recipients: 2 sent, 1 failed"."""
    counts: dict[str, int] = {}
    for n in items:
        counts[status_text(n)] = counts.get(status_text(n), 0) + 1
    order = ["sent", "failed", "bounced", "suppressed", "deferred", "sending", "queued", "cancelled", "withdrawn"]
    parts = [f"{counts[s]} {one_line(s)}" for s in order + sorted(set(counts) - set(order)) if counts.get(s)]
    opened = sum(1 for n in items if n.opened_at is not None)
    return (f"{len(items)} recipient{'s' if len(items) != 1 else ''}: {', '.join(parts) or 'none'}"
            + (f"; {opened} opened" if opened else ""))


def _key(n: Notification) -> str:
    return f"{n.kind}:{n.recipient.email.lower()}"


class NotificationTable(DataTable):
    BINDINGS = moving_bindings("notifications.", ("Next recipient", "Previous recipient", "First recipient",
                                                  "Last recipient"),
                               actions=("cursor_down", "cursor_up", "scroll_top", "scroll_bottom"))

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self.items: list[Notification] = []
        self._keys: list[str] = []
        self._widths: tuple[int, int, int] = (0, 0, 0)

    # ------------------------------------------------------------ layout

    def _fit(self) -> tuple[int, int, int]:
        """Widths of the status, recipient and reply columns: the row fits the table, so
        nothing hides past a horizontal scroll (the sentence under the table has the whole
        reply). The status column grows to "suppressed" only while a row is."""
        status = max([FIXED["status"]] + [min(len(status_text(n)), 10) for n in self.items])
        room = max(self.size.width, 60) - 2  # a vertical scrollbar may need two cells
        free = room - sum(FIXED.values()) - (status - FIXED["status"]) - 2 * self.cell_padding * len(COLUMNS)
        natural = max([len(recipient_text(n, 200)) for n in self.items] + [len("Recipient")])
        recipient = min(natural, max(16, free * 3 // 5))
        return status, recipient, max(12, free - recipient)

    def _cells(self, n: Notification, marked: bool) -> dict[str, object]:
        status_w, recipient_w, reply_w = self._widths
        status_style = "bold" if n.status in PROBLEMS else ""
        return {"mark": safe_text(">" if marked else " "), "recipient": safe_text(recipient_text(n, recipient_w)),
                "kind": safe_text(one_line(n.kind, FIXED["kind"])),
                "status": safe_text(one_line(status_text(n), status_w), status_style),
                "opened": safe_text(opened_text(n)),
                "attempts": safe_text(str(n.attempts)), "reply": safe_text(one_line(reply_text(n), reply_w))}

    def _build(self) -> None:
        """Columns at the widths that fit, then every row; the highlighted row stays."""
        row = self.cursor_row
        items, keys = self.items, self._keys
        self.items, self._keys = [], []  # before clear(), whose cursor move would mark old rows
        self.clear(columns=True)
        self.items, self._keys = items, keys
        self._widths = self._fit()
        widths = {**FIXED, "status": self._widths[0], "recipient": self._widths[1], "reply": self._widths[2]}
        for key, label in COLUMNS:
            self.add_column(safe_text(label), width=widths[key], key=key)
        for i, n in enumerate(items):
            self.add_row(*self._cells(n, False).values(), key=keys[i])
        if items:
            self.move_cursor(row=min(max(row, 0), len(items) - 1), animate=False)
            self._mark(None, self.cursor_row)

    def on_mount(self) -> None:
        self._build()  # the header shows while the list loads

    def on_resize(self) -> None:
        if self._fit() != self._widths:
            self._build()

    # ------------------------------------------------------------ data

    def show_notifications(self, items: list[Notification]) -> None:
        """Show the server's list: the same recipients update in place, others rebuild the rows."""
        keys: list = []
        seen: dict = {}
        for n in items:
            k = _key(n)
            seen[k] = seen.get(k, 0) + 1
            keys.append(k if seen[k] == 1 else f"{k}#{seen[k]}")
        if keys == self._keys and self._fit() == self._widths:
            for i, n in enumerate(items):
                if n != self.items[i]:
                    self.items[i] = n
                    for column, value in self._cells(n, i == self.cursor_row).items():
                        self.update_cell(keys[i], column, value)
            return
        self.items, self._keys = list(items), keys
        self._build()

    def set_status(self, email: str, status: str) -> bool:
        """An event said a recipient's status changed: show it now (the full row comes later)."""
        changed = False
        for i, n in enumerate(self.items):
            if n.recipient.email.lower() == email.lower() and n.status != status:
                self.items[i] = replace(n, status=status)
                changed = True
                if self._fit() != self._widths:  # a status too long for its column: laid out anew
                    self._build()
                    continue
                cells = self._cells(self.items[i], False)
                for column in ("status", "reply"):
                    self.update_cell(self._keys[i], column, cells[column])
        return changed

    def set_opened(self, email: str, opened_at: datetime) -> bool:
        """An event said a recipient opened the message: show when, now."""
        changed = False
        for i, n in enumerate(self.items):
            if n.recipient.email.lower() == email.lower() and n.opened_at is None:
                self.items[i] = replace(n, opened_at=opened_at)
                self.update_cell(self._keys[i], "opened", safe_text(opened_text(self.items[i])))
                changed = True
        return changed

    @property
    def highlighted_notification(self) -> Notification | None:
        row = self.cursor_row
        return self.items[row] if self.items and 0 <= row < len(self.items) else None

    # ------------------------------------------------------------ the marker and the terminal cursor

    def _mark(self, old: int | None, new: int | None) -> None:
        for row, text in ((old, " "), (new, ">")):
            if row is not None and 0 <= row < len(self._keys):
                self.update_cell(self._keys[row], "mark", safe_text(text))

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if old.row != new.row:
            self._mark(old.row, new.row)

    def _cursor_line(self) -> int | None:
        if not self.items or not self.is_valid_row_index(self.cursor_row):
            return None
        line = self._get_row_region(self.cursor_row).y - int(self.scroll_offset.y)
        header = self.header_height if self.show_header else 0
        return line if header <= line < self.content_region.height else None

    def terminal_cursor(self) -> Offset | None:
        """The highlighted row, for the app's rule of where the terminal cursor goes."""
        line = self._cursor_line()
        if line is None:
            return None
        region = self.content_region
        return Offset(region.x, region.y + line)
