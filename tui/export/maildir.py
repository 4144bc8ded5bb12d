"""The Maildir tree that ``penmail export`` adds to, in the Maildir++ layout that mutt, aerc,
notmuch, mbsync and Dovecot read: the inbox is the root's own ``cur/``, ``new/`` and
``tmp/``; Sent, Archive and Trash are the sub-folders ``.Sent``, ``.Archive`` and ``.Trash``,
each a Maildir. (No ``maildirfolder`` marker: only Courier's delivery agent wants it, and
notmuch notes it as a file that is not mail.)

Nothing else goes into the tree: the index (PEN message id -> folder and Maildir key) and
the lock live in penmail's state folder, under a name made from the tree's resolved path
(``exports/<hash>.json`` and ``.lock``), so mail programs find only mail and folders. The
index is a cache: files it does not know are looked at once for ``X-PEN-Message-Id`` (a run
cut short, a lost state folder, a tree moved elsewhere), so nothing is written twice.

A tree written by penmail before this layout (every folder flat in the root, with
``.penmail-index.json`` and ``.penmail-export.lock`` in it) is migrated on the next export:
the messages of sent, archive and trash are renamed into their sub-folders (same key, same
flags), and the two files are removed. No Textual here.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import itertools
import json
import os
import re
import secrets
import socket
import time
from email.parser import BytesParser
from pathlib import Path

from tui.files import fsync_dir, try_lock, write_atomic

__all__ = ["FOLDER_DIRS", "OLD_INDEX", "OLD_LOCK", "MaildirError", "MaildirTree"]

# PEN folder -> the Maildir++ folder ("" is the root: INBOX).
FOLDER_DIRS = {"inbox": "", "sent": ".Sent", "archive": ".Archive", "trash": ".Trash"}
OLD_INDEX = ".penmail-index.json"
OLD_LOCK = ".penmail-export.lock"
INDEX_FORMAT = "penmail-maildir-index/2"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_MSGID = re.compile(r"<([A-Za-z0-9_-]{1,200})@[^<>@\s]+>")
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_counter = itertools.count()


class MaildirError(Exception):
    """The tree cannot be used; ``message`` is one sentence."""

    def __init__(self, message: str, code: str = "folder"):
        super().__init__(message)
        self.message, self.code = message, code


def _unique_name() -> str:
    now = time.time()
    host = (socket.gethostname() or "localhost").replace("/", r"\057").replace(":", r"\072")
    return (f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{next(_counter)}"
            f"R{secrets.token_hex(8)}.{host}")


def _pen_headers(path: Path) -> tuple[str, str | None, str | None] | None:
    """(PEN id, X-PEN-Folder, parent id) of a file penmail wrote, else None."""
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | _OPEN_FLAGS)) as f:
            head = f.read(64 << 10).split(b"\n\n", 1)[0]
    except OSError:
        return None
    headers = BytesParser(policy=email.policy.compat32).parsebytes(head + b"\n\n", headersonly=True)
    pen_id = (headers.get("X-PEN-Message-Id") or "").strip()
    if not _SAFE_ID.match(pen_id):
        return None
    parent = _MSGID.search(headers.get("In-Reply-To") or "")
    return pen_id, (headers.get("X-PEN-Folder") or "").strip() or None, parent.group(1) if parent else None


class MaildirTree:
    """The tree at ``root``; its index and lock in ``state`` (a folder of penmail's own)."""

    def __init__(self, root: Path, state: Path):
        self.root = root
        try:
            if root.exists() and not root.is_dir():
                raise MaildirError(f"{root} is a file, not a Maildir folder.", code="not_a_folder")
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name in FOLDER_DIRS.values():
                self._make(name)
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise MaildirError(f"The Maildir {root} cannot be made ({exc.strerror or type(exc).__name__}).") from None
        tag = hashlib.sha256(str(root.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.index_path = state / f"{tag}.json"
        self.lock_path = state / f"{tag}.lock"
        self.messages: dict[str, dict] = {}  # PEN id -> {"key", "folder", "in_reply_to"}
        self.foreign: set[str] = set()  # keys of mail that is not from penmail (looked at once)
        self.migrated = 0  # messages moved out of the flat layout by this run

    def _make(self, name: str) -> None:
        folder = self.root / name if name else self.root
        folder.mkdir(exist_ok=True, mode=0o700)
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(exist_ok=True, mode=0o700)

    def folder_path(self, pen_folder: str | None) -> Path:
        name = FOLDER_DIRS.get(pen_folder or "inbox", "")
        return self.root / name if name else self.root

    # -- the index

    def load(self) -> None:
        """Read the index, migrate a flat tree, and look once at files the index does not know."""
        self._read(self.index_path, require_root=True)
        old = self.root / OLD_INDEX
        if old.is_file():
            self._migrate(old)
        self._reconcile()

    def _read(self, path: Path, *, require_root: bool) -> None:
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return
        if not isinstance(doc, dict) or (require_root and doc.get("maildir") != str(self.root.resolve())):
            return
        items = doc.get("messages")
        if isinstance(items, dict):
            for pen_id, entry in items.items():
                if isinstance(pen_id, str) and isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    self.messages.setdefault(pen_id, {"key": entry["key"], "folder": entry.get("folder"),
                                                      "in_reply_to": entry.get("in_reply_to")})
        foreign = doc.get("foreign")
        if isinstance(foreign, list):
            self.foreign |= {k for k in foreign if isinstance(k, str)}

    def save(self) -> None:
        doc = {"format": INDEX_FORMAT, "maildir": str(self.root.resolve()), "messages": self.messages,
               "foreign": sorted(self.foreign)}
        write_atomic(self.index_path, json.dumps(doc, ensure_ascii=False).encode("utf-8"))

    def files(self) -> dict[str, Path]:
        """Every message file of the tree's four folders, by Maildir key."""
        found: dict[str, Path] = {}
        for name in FOLDER_DIRS.values():
            for sub in ("new", "cur"):
                folder = (self.root / name if name else self.root) / sub
                try:
                    names = os.listdir(folder)
                except OSError:
                    continue
                for entry in names:
                    if not entry.startswith("."):
                        found[entry.split(":", 1)[0]] = folder / entry
        return found

    def _reconcile(self) -> None:
        """Files the index does not know: ours from a run cut short, or someone else's mail."""
        known = {entry["key"] for entry in self.messages.values()}
        changed = False
        for key, path in self.files().items():
            if key in known or key in self.foreign:
                continue
            found = _pen_headers(path)
            if found and found[0] not in self.messages:
                pen_id, folder, parent = found
                self.messages[pen_id] = {"key": key, "folder": folder, "in_reply_to": parent}
            else:
                self.foreign.add(key)
            changed = True
        if changed:
            self.save()

    def _migrate(self, old: Path) -> None:
        """The flat layout: messages of other folders move into their sub-folders."""
        self._read(old, require_root=False)
        self._reconcile()  # files of a run cut short carry their folder in X-PEN-Folder
        in_root = {}
        for sub in ("new", "cur"):
            with contextlib.suppress(OSError):
                for name in os.listdir(self.root / sub):
                    if not name.startswith("."):
                        in_root[name.split(":", 1)[0]] = (sub, name)
        for entry in list(self.messages.values()):
            found = in_root.get(entry["key"])
            if found is None:
                continue
            if entry.get("folder") is None:
                headers = _pen_headers(self.root / found[0] / found[1])
                entry["folder"] = headers[1] if headers else None
            target = self.folder_path(entry.get("folder"))
            if target == self.root:
                continue
            sub, name = found
            os.rename(self.root / sub / name, target / sub / name)
            self.migrated += 1
        for sub_dir in {self.folder_path(f) / s for f in FOLDER_DIRS for s in ("new", "cur")}:
            fsync_dir(sub_dir)
        self.save()
        old.unlink(missing_ok=True)
        (self.root / OLD_LOCK).unlink(missing_ok=True)

    # -- adding

    def deliver(self, data: bytes, *, folder: str, flags: str, mtime: float | None) -> str:
        """Write ``data`` into the folder's tmp/, fsync, link it into new/ (no flags) or cur/."""
        base = self.folder_path(folder)
        for _ in range(20):
            key = _unique_name()
            tmp = base / "tmp" / key
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
            except FileExistsError:
                continue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            sub = "cur" if flags else "new"
            dest = base / sub / (key + (f":2,{flags}" if flags else ""))
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            try:
                os.link(tmp, dest)
            except FileExistsError:
                tmp.unlink(missing_ok=True)
                continue
            except OSError:
                if os.path.lexists(dest):  # pragma: no cover
                    tmp.unlink(missing_ok=True)
                    continue
                os.rename(tmp, dest)  # no hard links on this file system
            else:
                tmp.unlink()
            fsync_dir(base / sub)
            return key
        raise MaildirError(f"No unique file name could be made in {base}.", code="names")  # pragma: no cover

    @contextlib.contextmanager
    def locked(self):
        """One export into a tree at a time (the lock is in the state folder, keyed by the tree)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        try:
            if not try_lock(fd):
                raise MaildirError(f"Another export into {self.root} is running; wait for it to finish.",
                                   code="busy")
            yield
        finally:
            os.close(fd)
