"""Line mode: list, read, get, status and export. No Textual here."""


from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from tui.config import state_dir
from tui.line import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
)
from tui.line.output import (
    BOLD,
    notification_json,
    summary_json,
)
from tui.safe_text import clean, one_line
from tui.text.format import address_text, gone_mark, human_size, list_date

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from tui.line.run import LineError, Run, _join, read_and_print, usage

# ---------------------------------------------------------------- reading


async def cmd_list(run: Run) -> int:
    from tui.pen_client import ValidationFailed

    args, out = run.args, run.out
    items: list = []
    total, exact = 0, True
    cursor = args.cursor or None
    async with run.signed_in() as client:
        while len(items) < args.limit:
            try:
                page = await client.list_messages(args.folder, limit=min(200, args.limit - len(items)), cursor=cursor,
                                                  unread=True if args.unread else None, q=args.search or None)
            except ValidationFailed as exc:  # a search the PEN cannot read, or a cursor it did not give
                raise usage(exc.message) from None
            items.extend(page.items)
            total, exact = page.total, page.exact
            cursor = page.next_cursor
            if not cursor or not page.items:
                break
        me = client.user.email if client.user else run.config.email
    next_cursor = one_line(cursor) if cursor else None
    if out.json:
        out.emit({"folder": args.folder, "total": total, "total_exact": exact, "count": len(items),
                  "next_cursor": next_cursor,
                  "items": [summary_json(s) for s in items]})
        return EXIT_OK
    for s in items:
        marks = ("U" if s.unread else "-") + ("A" if s.attachment_count else "-")
        sender = one_line(s.sender.name or "") or one_line(s.sender.email)
        subject = gone_mark(s, me) + (one_line(s.subject) or "(no subject)")
        if out.out_tty:
            row = f"{one_line(s.id)}  {list_date(s.sent_at)}  {one_line(sender, 24):<24}  {marks}  {subject}"
            out.line(out.style(row, BOLD) if s.unread else row)
        else:
            out.line("\t".join((one_line(s.id), list_date(s.sent_at), sender, marks, subject)))
    if not items and out.err_tty:
        out.note(f"No messages in {args.folder}" + (" that match." if args.search or args.unread else "."))
    if next_cursor:
        out.note(f"More: {next_command(args, next_cursor)}")
    return EXIT_OK


def next_command(args, cursor: str) -> str:
    """The command that lists the next page (on stderr, so stdout stays the rows alone)."""
    import shlex

    words = ["penmail", "list"]
    if args.folder != "inbox":
        words += ["--folder", args.folder]
    if args.unread:
        words.append("--unread")
    if args.search:
        words += ["--search", one_line(args.search)]
    if args.limit != 50:
        words += ["--limit", str(args.limit)]
    return shlex.join([*words, "--cursor", cursor])


async def cmd_read(run: Run) -> int:
    async with run.signed_in() as client:
        return await read_and_print(run, client, run.args.id)


async def cmd_get(run: Run) -> int:
    from tui.downloads import save_attachment
    from tui.pen_client import PenError

    args, out = run.args, run.out
    folder = Path(args.output).expanduser() if args.output else run.config.download_dir
    saved: list[dict] = []
    made = None
    async with run.signed_in() as client:
        message = await client.get_message(args.id)
        attachments = list(message.attachments)
        if not attachments:
            raise LineError("This message has no attachments.", EXIT_NOT_FOUND, "no_attachments")
        if args.attachment:
            if args.attachment > len(attachments):
                raise LineError(f"This message has {len(attachments)} attachment"
                                f"{'s' if len(attachments) != 1 else ''}, so there is no number {args.attachment}.",
                                EXIT_NOT_FOUND, "not_found")
            chosen = [(args.attachment, attachments[args.attachment - 1])]
        elif args.all or len(attachments) == 1:
            chosen = list(enumerate(attachments, 1))
        else:
            raise usage(f"This message has {len(attachments)} attachments; choose one with --attachment N "
                        f"(1 to {len(attachments)}) or take them all with --all.")

        def progress(p) -> None:
            left = f", {p.seconds_left:.0f} s left" if p.seconds_left else ""
            which = f" ({p.file_number} of {p.file_count})" if p.file_count > 1 else ""
            out.progress(f"{p.filename}{which}: {p.fraction * 100:3.0f}% of {human_size(p.total)}"
                         f"{f', {human_size(p.bytes_per_second)}/s' if p.bytes_per_second else ''}{left}")

        if args.output and not os.path.lexists(folder):
            made = _make_folder(folder)  # named on the command line: made, and said
            out.note(f"Made the folder {clean(str(made), keep_newlines=False)}.")
        for index, (number, attachment) in enumerate(chosen, 1):
            try:
                path, already = await save_attachment(client, message.id, attachment, folder, progress=progress,
                                                      _number=index, _count=len(chosen))
            except PenError as exc:
                if saved:
                    exc.message = _join(exc.message, f"{len(saved)} of {len(chosen)} were saved.")
                raise
            if already:
                out.note(f"{one_line(attachment.filename) or 'The attachment'} is already saved as "
                         f"{clean(str(path), keep_newlines=False)} (the same sha256); nothing was written.")
            shown = clean(str(path), keep_newlines=False)
            saved.append({"number": number, "attachment_id": one_line(attachment.id),
                          "filename": one_line(attachment.filename), "path": shown, "size": attachment.size,
                          "sha256": one_line(attachment.sha256), "already_saved": already})
            out.end_progress()
            if not out.json:
                out.line(shown)
    if out.json:
        out.emit({"message_id": one_line(message.id), "made_folder": clean(str(made), keep_newlines=False)
                  if made else None, "saved": saved})
    return EXIT_OK


def _make_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise LineError(f"The folder {clean(str(folder), keep_newlines=False)} could not be made "
                        f"({exc.strerror or type(exc).__name__}); choose another with -o.", EXIT_FAILED,
                        "folder_not_made") from None
    return folder


async def cmd_status(run: Run) -> int:
    out = run.out
    async with run.signed_in() as client:
        items = await client.notifications(run.args.id)
    if out.json:
        out.emit({"message_id": one_line(run.args.id), "items": [notification_json(n) for n in items]})
        return EXIT_OK
    for n in items:
        attempts = f"{n.attempts} attempt{'s' if n.attempts != 1 else ''}"
        error = one_line(n.last_error) if n.last_error else "-"
        opened = f"opened {list_date(n.opened_at)}" if n.opened_at else "not opened"
        fields = (address_text(n.recipient), one_line(n.kind), one_line(n.status), attempts, error, opened)
        out.line("  ".join(fields) if out.out_tty else "\t".join(fields))
    return EXIT_OK

# ---------------------------------------------------------------- export


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise usage(f"--since needs a date such as 2026-11-27, not {one_line(text, 40)!r}.") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the person's local midnight
    return when


async def cmd_export(run: Run) -> int:
    from tui.export import ExportError, export_maildir

    args, out = run.args, run.out
    since = parse_since(args.since)
    folders = list(dict.fromkeys(args.folder or ["inbox", "archive", "sent"]))
    maildir = Path(args.maildir).expanduser()

    def progress(done: int, total: int, subject: str) -> None:
        out.progress(f"Exporting {done} of {total}: {one_line(subject, 60)}")

    async with run.signed_in() as client:
        try:
            result = await export_maildir(client, maildir, folders=folders, since=since, progress=progress,
                                          state=state_dir(run.env) / "exports")
        except ExportError as exc:
            raise LineError(exc.message, EXIT_FAILED, exc.code) from None
    out.end_progress()
    where = clean(str(result.maildir), keep_newlines=False)
    if result.migrated:
        out.note(f"Moved {result.migrated} message{'s' if result.migrated != 1 else ''} of {where} from the old flat "
                 f"layout into its folders .Sent, .Archive and .Trash (Maildir++); penmail's index is now in its "
                 f"state folder.")
    if out.json:
        out.emit(result.to_json())
        return EXIT_OK
    attachments = sum(item["attachments"] for item in result.added)
    out.line(f"Exported {len(result.added)} new message{'s' if len(result.added) != 1 else ''} "
             f"({attachments} attachment{'s' if attachments != 1 else ''}) to {where}; "
             f"{result.skipped} {'were' if result.skipped != 1 else 'was'} there already.")
    return EXIT_OK
