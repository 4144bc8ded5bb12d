"""Replacing notifications in a local Maildir, and one message on standard input.

Maildir: each file of ``new/`` and ``cur/`` that is a notification of the PEN gets its real
message written in ``tmp/``, fsynced, and renamed into the same sub-folder under a name
made from the PEN message (``pen-<sha256 of host and id>``, the notification's flags
kept), and only then is the notification's file removed.  A run cut short leaves either
the notification alone (nothing happened), or both: the next run finds the name already
there, writes nothing and removes the notification.  Two notifications of one message
(a resend) end as one real message.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tui.files import fsync_dir
from tui.intercept.build import Replacement, Unreadable, replacement
from tui.intercept.notice import MAX_NOTICE, recognise

_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Outcome:
    """What happened to one notification: "replaced", "already" (a copy was there: only
    the notification was removed), "left" (not readable on the PEN) or "failed"."""
    kind: str
    folder: str
    replacement: Replacement | None = None
    pen_id: str | None = None
    reason: str | None = None

    def to_json(self) -> dict:
        doc = {"event": self.kind, "folder": self.folder}
        if self.replacement is not None:
            doc.update(self.replacement.to_json())
        elif self.pen_id:
            doc["id"] = self.pen_id
        if self.reason:
            doc["reason"] = self.reason
        return doc


def crash_hook() -> None:
    """Tests only: exit hard right after the real message is in place, before the
    notification is removed (the worst moment for a crash)."""
    if os.environ.get("PENMAIL_TEST_EXIT_AFTER_APPEND"):
        os._exit(99)


def _key(host: str, pen_id: str) -> str:
    return "pen-" + hashlib.sha256(f"{host}\0{pen_id}".encode("utf-8", "replace")).hexdigest()[:40]


def _flags(name: str) -> str:
    _, sep, info = name.partition(":2,")
    return "".join(sorted(set(c for c in info if c.isalpha()))) if sep else ""


def _write(root: Path, sub: str, name: str, data: bytes, mtime: float) -> None:
    tmp = root / "tmp" / f"{name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OPEN_FLAGS, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, root / sub / name)
    fsync_dir(root / sub)


async def intercept_maildir(client, root: str | os.PathLike, server: str, *, limit: int) -> AsyncIterator[Outcome]:
    """Replace every notification of ``server`` in the Maildir; yields one Outcome each."""
    from tui.export import _host
    from tui.pen_client import PenError

    root = Path(root).expanduser().absolute()
    if not all((root / sub).is_dir() for sub in ("tmp", "new", "cur")):
        raise FileNotFoundError(2, "not a Maildir (no tmp/, new/ and cur/)", str(root))
    host = _host(server)
    present = {name.split(":", 1)[0] for sub in ("new", "cur") for name in os.listdir(root / sub)}
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(root / sub)):
            path = root / sub / name
            if name.startswith((".", "pen-")):
                continue
            try:
                if path.stat().st_size > MAX_NOTICE:
                    continue
                raw = path.read_bytes()
            except OSError:
                continue  # gone meanwhile (another program moved it): not ours to mind
            notice = recognise(raw, server)
            if notice is None:
                continue
            key = _key(host, notice.pen_id)
            if key in present:
                path.unlink(missing_ok=True)
                fsync_dir(root / sub)
                yield Outcome("already", sub, pen_id=notice.pen_id)
                continue
            try:
                made = await replacement(client, notice, limit=limit, scratch=root / "tmp")
            except Unreadable:
                yield Outcome("left", sub, pen_id=notice.pen_id, reason="not readable with your sign-in")
                continue
            except PenError as exc:
                if exc.status is None or exc.status in (401, 429) or exc.status >= 500:
                    raise  # the PEN or the sign-in, not this message: stop
                yield Outcome("failed", sub, pen_id=notice.pen_id, reason=exc.message)
                continue
            flags = _flags(name)
            target = key + (f":2,{flags}" if sub == "cur" or flags else "")
            mtime = path.stat().st_mtime
            await asyncio.to_thread(_write, root, "cur" if flags else sub, target, made.data, mtime)
            present.add(key)
            crash_hook()
            path.unlink(missing_ok=True)
            fsync_dir(root / sub)
            yield Outcome("replaced", sub, made)


async def intercept_stream(signed_in, server: str, *, limit: int, source, sink) -> Outcome | None:
    """Read one message from ``source`` and write its replacement to ``sink``, or the
    message unchanged when it is not a notification of ``server`` (a large one is copied
    through in pieces, never held whole).  ``signed_in()`` is an async context manager
    giving a PEN client, entered only for a notification.  A notification the person
    cannot read, or any failure, writes the original unchanged (and the failure is then
    raised): a mail pipeline never loses the message."""
    head = source.read(MAX_NOTICE + 1)
    notice = recognise(head, server) if len(head) <= MAX_NOTICE else None
    outcome = None
    try:
        if notice is not None:
            async with signed_in() as client:
                try:
                    made = await replacement(client, notice, limit=limit)
                except Unreadable:
                    outcome = Outcome("left", "stdin", pen_id=notice.pen_id, reason="not readable with your sign-in")
                else:
                    crlf = head.split(b"\n", 1)[0].endswith(b"\r")
                    sink.write(made.crlf if crlf else made.data)
                    sink.flush()
                    return Outcome("replaced", "stdin", made)
    except BaseException:
        sink.write(head)
        sink.flush()
        raise
    sink.write(head)
    while chunk := source.read(1 << 20):
        sink.write(chunk)
    sink.flush()
    return outcome
