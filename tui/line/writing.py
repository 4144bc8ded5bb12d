"""Line mode: send and reply, through a kept draft and its Idempotency-Key. No Textual here."""


from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tui.line import (
    EXIT_FAILED,
    EXIT_OK,
)
from tui.line.output import (
    message_json,
)
from tui.safe_text import clean, one_line
from tui.text.format import NOTIFICATION_PENDING, address_text, body_text, human_size, long_date, notification_summary

if TYPE_CHECKING:
    from tui.pen_client import Address

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from tui.line.drafts import account_of, draft_store, find_draft
from tui.line.run import LineError, Run, _exit_code, _join, usage

# ---------------------------------------------------------------- writing


def _read_body(run: Run) -> str:
    if run.stdin_tty:
        run.out.note("Type the message; end it with Ctrl-D on a line of its own.")
    data = sys.stdin.buffer.read() if sys.stdin is not None else b""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise usage("The text on standard input is not UTF-8.") from None


def _addresses(values: list[str], option: str) -> list[Address]:
    from tui.compose import parse_address_list

    found, errors = parse_address_list(", ".join(values))
    if errors:
        raise usage(f"In {option}: {errors[0]}")
    return found


def _check_files(paths: list[str]) -> list[str]:
    checked = []
    for name in paths:
        path = Path(name).expanduser()
        if not path.is_file():
            raise usage(f"The file {clean(name, keep_newlines=False)!s} does not exist or is not a file.")
        if not os.access(path, os.R_OK):
            raise usage(f"The file {clean(name, keep_newlines=False)!s} cannot be read.")
        checked.append(str(path.resolve()))
    return checked


def _end_date(text: str | None) -> str | None:
    """--expires as the fixed time the draft keeps (RFC 3339), or None without it."""
    from tui.pen_client import rfc3339
    from tui.text.end_date import EndDateError, parse_end_date

    if text is None:
        return None
    try:
        when = parse_end_date(text, allow_none=False)
    except EndDateError as exc:
        raise usage(f"--expires: {exc}") from None
    return rfc3339(when) if when is not None else None


class _LineFiles:
    """The draft's files as tui.writing.uploads sees them (its UploadView): the bar on a terminal's
    standard error, the upload records copied into the draft (kept by the sender)."""

    def __init__(self, run: Run, draft) -> None:
        from tui.writing.sender import draft_entries

        self.out, self.draft = run.out, draft
        self.entries = draft_entries(draft)
        self._uploading: tuple[str, int] = ("", 0)

    def say(self, text: str) -> None:
        pass  # the sender hands a failure's sentence on; a success needs no words here

    def changed(self, highlight: int | None = None) -> None:
        self.draft.uploads = {e.path: e.record for e in self.entries if e.path and e.record}

    def redraw(self) -> None:
        pass

    def upload_started(self, entry) -> None:
        self._uploading = (one_line(entry.name, 60), entry.size or 0)

    def upload_progress(self, sent: int) -> None:
        shown, total = self._uploading
        self.out.progress(f"Uploading {shown}: {sent * 100 // max(total, 1):3d}% of {human_size(total)}")

    def upload_ended(self) -> None:
        self.out.end_progress()


def _not_sent_sentence(exc, draft) -> str:
    from tui.writing.sender import NotSent

    again = f"`penmail send --draft {draft.id}`"
    if exc.kind == NotSent.SENT_BEFORE:
        return _join("The PEN already has this draft's key with other content, so it was probably sent before; "
                     "check `penmail list --folder sent`", f"it is kept as draft {draft.id} and not sent again "
                     f"(`penmail drafts delete {draft.id}` removes it).")
    if exc.kind == NotSent.REFUSED:
        return _join(exc.message, f"the PEN will refuse this message as it is, so change that and send it anew "
                                  f"(the text is kept as draft {draft.id}: `penmail drafts show {draft.id}` shows "
                                  f"it, `penmail drafts delete {draft.id}` removes it).")
    maybe = (" (it may have reached the PEN; sending the draft again never sends it twice)"
             if exc.maybe_sent else "")
    return _join(exc.message, f"the message is kept as draft {draft.id}{maybe}: send it with {again}.")


async def _deliver(run: Run, client, store, draft) -> int:
    """Send the draft through tui.writing.sender (the TUI's way: upload ids kept in the draft, the
    draft's Idempotency-Key, a lost answer tried again, expired uploads uploaded again) and
    remove it once the PEN has it; keep it, and say what to do, when anything fails."""
    from tui.compose import parse_address_list
    from tui.writing.sender import NotSent, Sender
    from tui.writing.uploads import Uploader

    out = run.out
    for name in draft.attachments:
        if not Path(name).is_file():
            raise LineError(_join(f"The attached file {clean(name, keep_newlines=False)} is gone",
                                  f"the message is kept as draft {draft.id}."), EXIT_FAILED, "attachment_missing")
    files = _LineFiles(run, draft)

    async def keep() -> None:
        files.changed()
        await asyncio.to_thread(store.save, draft)

    recipients = {name: parse_address_list(", ".join(getattr(draft, name)))[0] for name in ("to", "cc", "bcc")}
    try:
        sent = await Sender(client, Uploader(client), keep).send(draft, files, recipients)
    except NotSent as exc:
        code = _exit_code(exc.error) if exc.error is not None else EXIT_FAILED
        raise LineError(_not_sent_sentence(exc, draft), code, exc.error.code if exc.error else exc.kind) from None
    store.delete(draft.id)
    if out.json:
        doc = {k: v for k, v in message_json(sent, sent.body_text, []).items()
               if k in ("id", "thread_id", "folder", "subject", "sent_at", "to", "cc", "bcc", "in_reply_to",
                        "attachments", "notifications", "expires_at")}
        out.emit(doc)
    else:
        people = [address_text(a) for a in (*sent.to, *sent.cc, *sent.bcc)]
        ends = f"; readable until {long_date(sent.expires_at)}" if sent.expires_at else ""
        out.line(f"Sent \"{one_line(sent.subject) or '(no subject)'}\" to {', '.join(people) or 'nobody'} "
                 f"(id {one_line(sent.id)}){ends}.")
        notifications = await _first_attempts(client, sent)
        if notifications:
            line = f"Notifications to {notification_summary([n.status for n in notifications])}"
            if any(n.status in NOTIFICATION_PENDING for n in notifications):
                line += (f"; the PEN keeps trying the ones that wait, and `penmail status {one_line(sent.id)}` "
                         f"shows where they are")
            out.line(line + ".")
    return EXIT_OK


SETTLE_SECONDS = 5.0  # how long `send` waits for the first attempt at each notification


async def _first_attempts(client, sent) -> list:
    """The message's notifications once each has had its first attempt (or SETTLE_SECONDS
    have passed), so that `send` says how many went and how many wait, not "Sent" alone."""
    from tui.pen_client import PenError

    items = list(sent.notifications)
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while items and any(n.status in ("queued", "sending") for n in items):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
        try:
            items = await client.notifications(sent.id)
        except PenError:
            break  # the message is sent; what its notifications did can be asked with `status`
    return items


@contextlib.asynccontextmanager
async def _keeping(draft):
    """Failures before delivery (signing in, fetching the original) still keep the draft."""
    from tui.pen_client import PenError

    try:
        yield
    except LineError as exc:
        if "kept as draft" not in exc.message:
            exc.message = _join(exc.message, f"the message is kept as draft {draft.id}: send it with "
                                             f"`penmail send --draft {draft.id}`.")
        raise
    except PenError as exc:
        raise LineError(_join(exc.message, f"the message is kept as draft {draft.id}: send it with "
                                           f"`penmail send --draft {draft.id}`."), _exit_code(exc), exc.code) from None


async def cmd_send(run: Run) -> int:
    from tui.compose import format_address, validate_subject
    from tui.drafts import Draft

    args = run.args
    store = draft_store(run)
    if args.draft:
        if args.to or args.cc or args.bcc or args.subject is not None or args.attach or args.expires:
            raise usage("--draft sends a kept draft as it is; give no other options with it.")
        draft = find_draft(run, store, args.draft)
        for items, option in ((draft.to, "to"), (draft.cc, "cc"), (draft.bcc, "bcc")):
            _addresses(items, f"the draft's {option}")
    else:
        to = _addresses(args.to, "--to")
        cc = _addresses(args.cc, "--cc")
        bcc = _addresses(args.bcc, "--bcc")
        if not to:
            raise usage("Name at least one recipient with --to.")
        if args.subject is None:
            raise usage("Give the subject with --subject.")
        problem = validate_subject(args.subject)
        if problem:
            raise usage(problem)
        files = _check_files(args.attach)
        expires_at = _end_date(args.expires)
        body = _read_body(run)
        if not body.strip() and not args.allow_empty:
            # `send </dev/null`, or a script whose text went missing: never a blank message unasked.
            raise usage("Standard input had no text, so nothing was sent; give the message on standard input, "
                        "or pass --allow-empty to send it without text.")
        draft = Draft(to=[format_address(a) for a in to], cc=[format_address(a) for a in cc],
                      bcc=[format_address(a) for a in bcc], subject=args.subject, body=body, attachments=files,
                      account=account_of(run), expires_at=expires_at)
        store.save(draft)
    async with _keeping(draft):
        async with run.signed_in() as client:
            return await _deliver(run, client, store, draft)


async def cmd_reply(run: Run) -> int:
    from tui.compose import format_address, quote_body, reply_recipients, reply_subject
    from tui.drafts import Draft

    args = run.args
    files = _check_files(args.attach)
    store = draft_store(run)
    async with run.signed_in() as client:
        original = await client.get_message(args.id)
        me = client.user.email if client.user else (run.config.email or "")
        to, cc = reply_recipients(original, me, args.all)
        if not to:
            raise LineError("There is no one to reply to on this message.", EXIT_FAILED, "no_recipients")
        own = _read_body(run)
        quoted_text = original.body_text
        if not quoted_text.strip() and original.body_html:
            quoted_text, _, _ = body_text(original)
        quoted = quote_body(quoted_text, original.sent_at, original.sender.name or original.sender.email)
        body = (own.rstrip("\n") + "\n\n" if own.strip() else "") + quoted
        draft = Draft(to=[format_address(x) for x in to], cc=[format_address(x) for x in cc],
                      subject=reply_subject(original.subject), body=body, attachments=files,
                      in_reply_to=original.id, account=account_of(run))
        store.save(draft)
        async with _keeping(draft):
            return await _deliver(run, client, store, draft)
