"""Line mode: send and reply, through a kept draft and its Idempotency-Key. No Textual here."""


from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tui.config import state_dir
from tui.format import address_text, body_text, human_size
from tui.line import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
)
from tui.line.output import (
    message_json,
)
from tui.safe_text import clean, one_line

if TYPE_CHECKING:
    from tui.pen_client import Address

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from tui.line.run import LineError, Run, SEND_TRIES, _exit_code, _join, usage


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


async def _deliver(run: Run, client, store, draft) -> int:
    """Upload, send with the draft's Idempotency-Key (a retry never sends twice), and
    remove the draft once the PEN has it; keep it, and say so, when anything fails."""
    from tui.compose import parse_address_list
    from tui.pen_client import PenError, ServerError, Unreachable, ValidationFailed

    out = run.out

    def addrs(items: list[str]) -> list[Address]:
        return parse_address_list(", ".join(items))[0]

    upload_ids = []
    try:
        for name in draft.attachments:
            path = Path(name)
            if not path.is_file():
                raise LineError(f"The attached file {clean(name, keep_newlines=False)} is gone.", EXIT_FAILED,
                                "attachment_missing")
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

            def progress(done: int, total: int, shown=one_line(path.name, 60)) -> None:
                out.progress(f"Uploading {shown}: {done * 100 // max(total, 1):3d}% of {human_size(total)}")

            attachment = await client.upload(path, content_type=content_type, progress=progress)
            out.end_progress()
            upload_ids.append(attachment.id)
        for attempt in range(SEND_TRIES):
            try:
                sent = await client.send(to=addrs(draft.to), cc=addrs(draft.cc), bcc=addrs(draft.bcc),
                                         subject=draft.subject, body_text=draft.body,
                                         idempotency_key=draft.idempotency_key, in_reply_to=draft.in_reply_to,
                                         attachments=upload_ids)
                break
            except (Unreachable, ServerError) as exc:
                # The answer may be lost while the PEN has the message: the same key is safe.
                if attempt == SEND_TRIES - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after or 0.5 * 2 ** attempt, 10))
    except (PenError, LineError, OSError) as exc:
        message = exc.message if isinstance(exc, (PenError, LineError)) else \
            f"Reading an attached file failed ({exc.strerror or type(exc).__name__})"
        maybe = isinstance(exc, (Unreachable, ServerError))
        if isinstance(exc, ValidationFailed) and exc.code == "idempotency_key_reused":
            message = ("The PEN already has this draft's key with other content, so it was probably sent "
                       "before; check `penmail list --folder sent`")
        then = (f"the message is kept as draft {draft.id}" + (" (it may have reached the PEN; sending the draft "
                "again never sends it twice)" if maybe else "") + f": send it with `penmail send --draft {draft.id}`.")
        code = exc.exit_code if isinstance(exc, LineError) else _exit_code(exc) if isinstance(exc, PenError) \
            else EXIT_FAILED
        raise LineError(_join(message, then), code, getattr(exc, "code", "failed")) from None
    store.delete(draft.id)
    if out.json:
        doc = {k: v for k, v in message_json(sent, sent.body_text, []).items()
               if k in ("id", "thread_id", "folder", "subject", "sent_at", "to", "cc", "bcc", "in_reply_to",
                        "attachments", "notifications")}
        out.emit(doc)
    else:
        people = [address_text(a) for a in (*sent.to, *sent.cc, *sent.bcc)]
        out.line(f"Sent \"{one_line(sent.subject) or '(no subject)'}\" to {', '.join(people) or 'nobody'} "
                 f"(id {one_line(sent.id)}).")
    return EXIT_OK


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


def _drafts(run: Run):
    from tui.drafts import DraftStore

    return DraftStore(state_dir(run.env) / "drafts")


async def cmd_send(run: Run) -> int:
    from tui.compose import format_address, validate_subject
    from tui.drafts import Draft

    args = run.args
    store = _drafts(run)
    if args.draft:
        if args.to or args.cc or args.bcc or args.subject is not None or args.attach:
            raise usage("--draft sends a kept draft as it is; give no other options with it.")
        draft = store.load(args.draft)
        if draft is None:
            raise LineError(f"There is no draft {one_line(args.draft, 80)!r}.", EXIT_NOT_FOUND, "not_found")
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
        body = _read_body(run)
        if not body.strip() and not args.allow_empty:
            # `send </dev/null`, or a script whose text went missing: never a blank message unasked.
            raise usage("Standard input had no text, so nothing was sent; give the message on standard input, "
                        "or pass --allow-empty to send it without text.")
        draft = Draft(to=[format_address(a) for a in to], cc=[format_address(a) for a in cc],
                      bcc=[format_address(a) for a in bcc], subject=args.subject, body=body, attachments=files)
        store.save(draft)
    async with _keeping(draft):
        async with run.signed_in() as client:
            return await _deliver(run, client, store, draft)


async def cmd_reply(run: Run) -> int:
    from tui.compose import format_address, quote_body, reply_recipients, reply_subject
    from tui.drafts import Draft

    args = run.args
    files = _check_files(args.attach)
    store = _drafts(run)
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
                      in_reply_to=original.id)
        store.save(draft)
        async with _keeping(draft):
            return await _deliver(run, client, store, draft)
