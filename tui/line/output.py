"""What line mode prints: plain lines on stdout, sentences on stderr, JSON for --json.

Everything that came from a server passes through ``safe_text`` here (``one_line`` for
fields, ``clean`` for bodies) before it is written, in plain and in JSON output alike, so
no escape sequence, C1 control or bidi override from the data reaches a terminal or a
script.  Colour (a little bold, never the only signal) is used only when the stream is a
terminal, ``NO_COLOR`` is not set and ``TERM`` is not ``dumb``.  No Textual here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from tui.safe_text import clean, one_line
from tui.text.format import iso

__all__ = [
    "Output",
    "address_json",
    "attachment_json",
    "audit_json",
    "message_json",
    "notification_json",
    "summary_json",
    "use_colour",
]

BOLD, DIM, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"


def use_colour(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR (https://no-color.org) or TERM=dumb."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class Output:
    """stdout for results, stderr for sentences and progress."""

    def __init__(self, *, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 env: Mapping[str, str] | None = None):
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        for stream in (self.out, self.err):
            # A terminal that cannot show a character gets "?" rather than a crash.
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                try:
                    reconfigure(errors="replace")
                except (ValueError, OSError):
                    pass
        self.json = json_mode
        self.colour = use_colour(self.out, env)
        self.err_colour = use_colour(self.err, env)
        self.out_tty = _is_tty(self.out)
        self.err_tty = _is_tty(self.err)
        self._progress_width = 0

    # ------------------------------------------------------------ stdout

    def style(self, text: str, sgr: str) -> str:
        return f"{sgr}{text}{RESET}" if self.colour and text else text

    def line(self, text: str = "") -> None:
        self.end_progress()
        self.out.write(text + "\n")

    def lines(self, text: str) -> None:
        for line in text.split("\n"):
            self.line(line)

    def emit(self, document: Any) -> None:
        """One JSON document on one line (strings in it are already cleaned)."""
        self.end_progress()
        self.out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        for stream in (self.out, self.err):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------ stderr

    def note(self, sentence: str) -> None:
        """A sentence for the person (not a result): stderr, one line."""
        self.end_progress()
        self.err.write(one_line(sentence) + "\n")

    def error(self, sentence: str) -> None:
        self.end_progress()
        text = f"penmail: {one_line(sentence)}"
        if self.err_colour:
            text = f"{RED}{text}{RESET}"
        self.err.write(text + "\n")

    def progress(self, text: str) -> None:
        """A line on a terminal's stderr that rewrites itself; nothing when stderr is a pipe."""
        if not self.err_tty:
            return
        text = one_line(text, 200)
        pad = max(0, self._progress_width - len(text))
        self.err.write("\r" + text + " " * pad)
        self.err.flush()
        self._progress_width = len(text)

    def end_progress(self) -> None:
        if self._progress_width:
            self.err.write("\n")
            self.err.flush()
            self._progress_width = 0


# ---------------------------------------------------------------- formatting












def address_json(a) -> dict:
    return {"email": one_line(a.email), "name": one_line(a.name or "") or None}


def summary_json(s) -> dict:
    return {
        "id": one_line(s.id), "thread_id": one_line(s.thread_id), "folder": one_line(s.folder),
        "from": address_json(s.sender), "to": [address_json(a) for a in s.to],
        "cc": [address_json(a) for a in s.cc], "subject": one_line(s.subject), "sent_at": iso(s.sent_at),
        "unread": bool(s.unread), "attachment_count": int(s.attachment_count), "size": int(s.size),
        "snippet": one_line(s.snippet), "expires_at": iso(s.expires_at), "revoked_at": iso(s.revoked_at),
    }


def attachment_json(number: int, a) -> dict:
    return {"number": number, "id": one_line(a.id), "filename": one_line(a.filename),
            "content_type": one_line(a.content_type), "size": int(a.size), "sha256": one_line(a.sha256)}


def notification_json(n) -> dict:
    return {"recipient": address_json(n.recipient), "kind": one_line(n.kind), "status": one_line(n.status),
            "attempts": int(n.attempts), "last_error": one_line(n.last_error) if n.last_error else None,
            "updated_at": iso(n.updated_at), "opened_at": iso(n.opened_at), "revoked_at": iso(n.revoked_at)}


def _cleaned(value: Any, depth: int = 0) -> Any:
    """JSON from the server with every string through one_line (keys too)."""
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {one_line(str(k)): _cleaned(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v, depth + 1) for v in value]
    return one_line(str(value))


def audit_json(row) -> dict:
    def text(value: str | None) -> str | None:
        return one_line(value) if value else None

    return {"id": int(row.id), "at": iso(row.at), "action": one_line(row.action), "actor": text(row.actor),
            "recipient": text(row.recipient), "attachment_id": text(row.attachment_id),
            "channel": one_line(row.channel), "client": text(row.client), "detail": _cleaned(row.detail)}


def message_json(m, body: str, links: list[str]) -> dict:
    doc = summary_json(m)
    doc.update({
        "bcc": [address_json(a) for a in m.bcc],
        "in_reply_to": one_line(m.in_reply_to) if m.in_reply_to else None,
        "attachments": [attachment_json(n, a) for n, a in enumerate(m.attachments, 1)],
        "body": clean(body),
        "body_text": clean(m.body_text),
        "has_html": m.body_html is not None,
        "links": [one_line(u) for u in links],
        "notifications": [notification_json(n) for n in m.notifications],
    })
    return doc
