"""Line mode: folders, and move, delete and mark for one message or several. No Textual here.

With several ids each is done on its own (one request each): what was done is printed, and
each id that failed gets its sentence on stderr; the exit code is then that of the first
failure (4 when it was not found, else 1). A failure that is not about one message (not
signed in, the PEN unreachable) stops at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tui.line import EXIT_FAILED, EXIT_OK
from tui.line.run import LineError, Run, _exit_code, _sentence
from tui.safe_text import one_line

_NAMES = {"inbox": "the inbox", "sent": "sent", "archive": "the archive", "trash": "the trash"}


async def cmd_folders(run: Run) -> int:
    out = run.out
    async with run.signed_in() as client:
        folders = await client.folders()
    if out.json:
        out.emit({"items": [{"name": one_line(f.name), "total": f.total, "unread": f.unread} for f in folders]})
        return EXIT_OK
    for f in folders:
        if out.out_tty:
            out.line(f"{one_line(f.name):<8}  {f.total:>7} message{'s' if f.total != 1 else ' '}  {f.unread:>7} unread")
        else:
            out.line("\t".join((one_line(f.name), str(f.total), str(f.unread))))
    return EXIT_OK


async def _each(run: Run, ids: list[str], act: Callable[..., Awaitable[dict]], done_line: Callable[[dict], str],
                verb: str) -> int:
    """Run act(client, id) for every id (each once, in the order given)."""
    from tui.pen_client import CertificateError, InvalidCredentials, NotSignedIn, PenError, Unreachable

    out = run.out
    done: list[dict] = []
    failed: list[dict] = []
    ids = list(dict.fromkeys(ids))
    async with run.signed_in() as client:
        for message_id in ids:
            try:
                result = await act(client, message_id)
            except (NotSignedIn, InvalidCredentials, Unreachable, CertificateError):
                raise
            except (PenError, LineError) as exc:
                code = exc.exit_code if isinstance(exc, LineError) else _exit_code(exc)
                failed.append({"id": one_line(message_id), "code": exc.code, "message": _sentence(exc.message),
                               "exit_code": code})
                if len(ids) == 1:
                    raise
                continue
            done.append(result)
            if not out.json:
                out.line(done_line(result))
    for f in failed:
        out.error(f"{f['id']}: {f['message']}")
    if failed and not done:
        out.note(f"Nothing was {verb}.")
    elif failed:
        out.note(f"{len(done)} of {len(ids)} were {verb}.")
    if out.json:
        out.emit({"done": done, "failed": failed})
    return failed[0]["exit_code"] if failed else EXIT_OK


def _entry(summary) -> dict:
    return {"id": one_line(summary.id), "folder": one_line(summary.folder), "unread": bool(summary.unread),
            "subject": one_line(summary.subject)}


async def cmd_move(run: Run) -> int:
    folder = run.args.folder

    async def act(client, message_id: str) -> dict:
        return _entry(await client.update_message(message_id, folder=folder))

    return await _each(run, run.args.ids, act, lambda e: f"Moved {e['id']} to {_NAMES[folder]}.", "moved")


async def cmd_mark(run: Run) -> int:
    unread = run.args.state == "unread"

    async def act(client, message_id: str) -> dict:
        return _entry(await client.update_message(message_id, unread=unread))

    return await _each(run, run.args.ids, act, lambda e: f"Marked {e['id']} {run.args.state}.", "marked")


async def cmd_delete(run: Run) -> int:
    if not run.args.for_good:
        async def to_trash(client, message_id: str) -> dict:
            return {**_entry(await client.update_message(message_id, folder="trash")), "deleted": False}

        return await _each(
            run, run.args.ids, to_trash, lambda e: f"Moved {e['id']} to the trash.", "moved to the trash"
        )

    async def for_good(client, message_id: str) -> dict:
        message = await client.get_message(message_id)
        if message.folder != "trash":
            raise LineError(
                f"{one_line(message_id)} is in {_NAMES.get(message.folder, message.folder)}, not the "
                f"trash; only a message in the trash is deleted for good (`penmail delete "
                f"{one_line(message_id)}` moves it there first).",
                EXIT_FAILED,
                "not_in_trash",
            )
        await client.delete_message(message_id)
        return {**_entry(message), "folder": None, "deleted": True}

    return await _each(run, run.args.ids, for_good, lambda e: f"Deleted {e['id']} for good.", "deleted")
