"""What a message that came back to a bounce address says: a permanent failure, a delay, or
nothing (an auto-reply, any other mail).

An RFC 3464 report's per-recipient blocks decide when it has any; a report without a
readable one (a whitespace-only line splitting it, per-message fields only, no
`message/delivery-status` part) and every other mail go to flufl.bounce's detectors. An
`Auto-Submitted` header hides nothing: MTAs put it on their bounces too (sendmail's
`auto-generated (failure)`); a vacation reply is simply not something a detector reads as
a bounce. Whatever text a bounce carries is the remote server's words: the diagnostic
starts "the recipient's mail server said: ", so a recipient that writes its own bounce
cannot make it read as the PEN's.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

from pen_server.mailer import clean_line
from pen_server.text import strip_controls

log = logging.getLogger("pen_server.bounces")

DIAGNOSTIC_LIMIT = 1000
SAID = "the recipient's mail server said: "
_AUTO_SUBJECT = re.compile(r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|"
                           r"abwesenheit|absence|vacation|away from)", re.I)
# A line with an SMTP reply (first digit 4 or 5, second 0 to 5) or an enhanced status code.
_SMTP_LINE = re.compile(r"\b[45][0-5]\d[ -]\S|\b[45]\.\d{1,3}\.\d{1,3}\b")


@dataclass
class Verdict:
    kind: str  # "permanent", "delayed", or "none" (not a bounce: an auto-reply or other mail)
    diagnostic: str  # a bounce's: SAID and its words, or "" when it gave none; else why it is none


def _short(text: str) -> str:
    return " ".join(clean_line(strip_controls(text or "", " ")).split())[:DIAGNOSTIC_LIMIT]


def _said(words: str) -> str:
    """A bounce's own text as its diagnostic: the remote server's words, marked as such
    (empty when it gave none)."""
    words = _short(words)
    return SAID + words if words else ""


def _dsn(msg: Message) -> Verdict | None:
    """An RFC 3464 report: the first failed, else the first delayed, recipient block; None
    when it has no readable per-recipient block (or is no report)."""
    if msg.get_content_type() != "multipart/report":
        return None
    found: dict[str, str] = {}
    readable = False
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks: Any = part.get_payload()  # a multipart part: a list of header blocks
        for block in blocks:
            if block.get("Action") is None:  # the per-message block, or one we cannot read
                continue
            readable = True
            action = str(block.get("Action", "")).strip().lower()
            kind = "permanent" if action.startswith(("fail", "error")) else \
                "delayed" if action.startswith("delay") else None
            if kind is None or kind in found:
                continue
            code = str(block.get("Diagnostic-Code", ""))
            words = _short(code.partition(";")[2] or code)
            status = _short(str(block.get("Status", "")))
            if status and status not in words:
                words = f"{words} (status {status})" if words else f"status {status}"
            found[kind] = _said(words)
    for kind in ("permanent", "delayed"):
        if kind in found:
            return Verdict(kind, found[kind])
    # Blocks that say "delivered", "relayed" or "expanded": not a failure at all.
    return Verdict("none", "a delivery report without a failure") if readable else None


def is_auto_reply(msg: Message) -> bool:
    """Marks of an auto-reply that a bounce never carries. `Auto-Submitted` is not one:
    sendmail, Exim and Postfix put it on their bounces."""
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject", ""))))


def _text_lines(msg: Message) -> list[str]:
    lines: list[str] = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw: Any = part.get_payload(decode=True) or b""
            try:
                lines += raw.decode(part.get_content_charset() or "utf-8", "replace").splitlines()
            except LookupError:
                lines += raw.decode("utf-8", "replace").splitlines()
    return lines


def _non_standard(msg: Message) -> Verdict:
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector that trips over odd mail: not a bounce we can read
        log.exception("reading a bounce failed")
        return Verdict("none", "")
    if not temporary and not permanent:
        return Verdict("none", "")
    kind = "permanent" if permanent else "delayed"
    said = next((line for line in _text_lines(msg) if _SMTP_LINE.search(line)), "")
    return Verdict(kind, _said(said))


def classify(data: bytes) -> Verdict:
    """What a message that came back to a bounce address says."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    verdict = _dsn(msg)
    if verdict is not None:
        return verdict
    if is_auto_reply(msg):
        return Verdict("none", "an auto-reply")
    verdict = _non_standard(msg)
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if verdict.kind == "none" and auto and not auto.startswith("no"):
        return Verdict("none", "an auto-reply")  # what the log says of it
    return verdict
