"""Drafts kept on disk, so a crash, a dropped SSH session or ``kill -9`` loses nothing.

Each draft is one JSON file, ``<state_dir>/drafts/<draft id>.json``, replaced atomically
(temporary file in the same folder, flush, fsync, rename, fsync of the folder): a reader
sees the old draft or the new one, never half of one.  A draft carries the
``Idempotency-Key`` for its ``POST /messages`` from the moment it is made, so sending it
again after a lost answer cannot send it twice.

A draft belongs to the account it was written in (``account``: the server URL and e-mail,
normalised as the keyring entry is), so it is offered back, and can be sent, only when that
account is signed in.  Once an attached file is uploaded, the draft keeps the upload's id
with the file's size, modification time and sha256 (``uploads``); a draft resumed after a
crash reuses that id while the file is unchanged, so a retried send has the same body as
the first and the server answers it with the first one's message instead of refusing a
reused Idempotency-Key.

Files are written with ``tui.files.write_atomic``.

The package: this module (the store) and ``folder`` (the Drafts folder of the mailbox, pages
of drafts as the other folders' summaries). No Textual; may import the client library
(tui.files, tui.config, tui.pen_client), never the UI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.files import fsync_dir, write_atomic

__all__ = ["Draft", "DraftError", "DraftStore", "account_key", "reusable_upload", "upload_record"]

_ID = re.compile(r"^[0-9a-f]{32}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # the contract: 1-255 printable ASCII
_STALE_TEMP_SECONDS = 3600
_UPLOAD_ID = re.compile(r"^[\x21-\x7e]{1,255}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DraftError(ValueError):
    """A draft file's contents are not a draft."""


def account_key(server: str, email: str) -> str:
    """ "https://pen.example|ann@x.example": one account, normalised as tui.signin.credentials does
    for the keyring (URL stripped and without a trailing "/", e-mail lower-cased)."""
    return f"{(server or '').strip().rstrip('/')}|{(email or '').strip().lower()}"


def upload_record(upload_id: str, size: int, mtime_ns: int | None, sha256: str | None = None) -> dict[str, Any]:
    """What a draft keeps about one uploaded file: the PEN's id, and how to tell the file is unchanged."""
    record: dict[str, Any] = {"id": upload_id, "size": int(size)}
    if mtime_ns is not None:
        record["mtime_ns"] = int(mtime_ns)
    if sha256:
        record["sha256"] = sha256.lower()
    return record


def _valid_record(value: Any) -> dict[str, Any] | None:
    """A clean upload record, or None (a record that is not one only costs a new upload)."""
    if not isinstance(value, dict):
        return None
    upload_id, size = value.get("id"), value.get("size")
    if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    mtime_ns, sha256 = value.get("mtime_ns"), value.get("sha256")
    if not (isinstance(mtime_ns, int) and not isinstance(mtime_ns, bool)):
        mtime_ns = None
    if not (isinstance(sha256, str) and _SHA256.match(sha256.lower())):
        sha256 = None
    if mtime_ns is None and sha256 is None:
        return None  # nothing would tell a changed file from the uploaded one
    return upload_record(upload_id, size, mtime_ns, sha256)


def _sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def reusable_upload(path: str, record: Any) -> str | None:
    """The upload id in ``record`` if the file at ``path`` is still the one uploaded, else None.

    Unchanged means the same size and either the same modification time or (when the time
    moved, say after a copy) the same sha256.  Blocking: it stats and may read the file, so
    call it in a thread.
    """
    record = _valid_record(record)
    if record is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    if info.st_size != record["size"]:
        return None
    if record.get("mtime_ns") is not None and info.st_mtime_ns == record["mtime_ns"]:
        return record["id"]
    if record.get("sha256"):
        try:
            if _sha256_of(path) == record["sha256"]:
                return record["id"]
        except OSError:
            return None
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return uuid.uuid4().hex


def _new_key() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Draft:
    """A message being written.  Addresses are the strings the person typed."""

    id: str = field(default_factory=_new_id)
    idempotency_key: str = field(default_factory=_new_key)
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    attachments: list[str] = field(default_factory=list)  # local file paths
    # Local file path -> upload_record(): the PEN's id for that file once it is uploaded.
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_reply_to: str | None = None  # message id
    forward_of: str | None = None  # message id
    forward_attachment_ids: list[str] = field(default_factory=list)
    # The end date, RFC 3339 in UTC, fixed when it is set ("7d" becomes a time then), so a
    # retried send has the same body as the first.
    expires_at: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    # account_key() of the account that wrote it.  None in files written before drafts had
    # an account: such a draft is offered to whichever account signs in, and becomes that
    # account's when it is resumed.
    account: str | None = None

    def belongs_to(self, account: str) -> bool:
        """May ``account`` (an account_key) see and send this draft?"""
        return self.account is None or self.account == account

    def new_idempotency_key(self) -> str:
        """Start a new sending attempt for changed content.

        The server answers 422 ``idempotency_key_reused`` when one key comes with another
        body, so call this when the person edits a draft after a send that failed with a
        definite answer -- never after a send whose answer was lost.
        """
        self.idempotency_key = _new_key()
        return self.idempotency_key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Draft:
        """A Draft from parsed JSON; raises DraftError for anything that is not one."""
        if not isinstance(data, dict):
            raise DraftError("A draft must be a JSON object.")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.name in ("id", "idempotency_key"):
                    raise DraftError(f"The draft has no {f.name}.")
                continue  # older files may lack newer fields: keep the default
            value = data[f.name]
            if f.name in ("to", "cc", "bcc", "attachments", "forward_attachment_ids"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise DraftError(f"The draft's {f.name} must be a list of strings.")
            elif f.name == "uploads":
                if not isinstance(value, dict):
                    raise DraftError("The draft's uploads must be an object.")
                value = {path: record for path, record in ((p, _valid_record(r)) for p, r in value.items())
                         if isinstance(path, str) and record is not None}
            elif f.name in ("in_reply_to", "forward_of", "account", "expires_at"):
                if value is not None and not isinstance(value, str):
                    raise DraftError(f"The draft's {f.name} must be a string or null.")
            elif not isinstance(value, str):
                raise DraftError(f"The draft's {f.name} must be a string.")
            kwargs[f.name] = value
        if not _ID.match(kwargs["id"]):
            raise DraftError("The draft's id is not a draft id.")
        if not _IDEMPOTENCY_KEY.match(kwargs["idempotency_key"]):
            raise DraftError("The draft's idempotency key is not 1 to 255 printable ASCII characters.")
        return cls(**kwargs)


def _sort_key(draft: Draft) -> float:
    try:
        return datetime.fromisoformat(draft.updated_at.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


class DraftStore:
    """The drafts in one folder: by default ``state_dir()/drafts``."""

    def __init__(self, root: Path | str | None = None) -> None:
        if root is None:
            from tui.config import state_dir

            root = state_dir() / "drafts"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, draft_id: str) -> Path:
        # Only real ids become file names: no "../x" can reach the file system.
        if not isinstance(draft_id, str) or not _ID.match(draft_id):
            raise DraftError(f"{draft_id!r} is not a draft id.")
        return self.root / f"{draft_id}.json"

    def save(self, draft: Draft) -> None:
        """Write the draft (stamping updated_at); it is on disk when this returns."""
        path = self._path(draft.id)
        draft.updated_at = _now()
        data = json.dumps(draft.to_dict(), ensure_ascii=False, indent=1).encode("utf-8")
        write_atomic(path, data)

    def load(self, draft_id: str) -> Draft | None:
        """The draft with this id, or None when there is none or its file is unreadable."""
        try:
            path = self._path(draft_id)
        except DraftError:
            return None
        draft = self._read(path)
        return draft if draft is not None and draft.id == draft_id else None

    def list(self, account: str | None = None) -> list[Draft]:
        """Every readable draft, most recently saved first; broken files are skipped.

        With ``account`` (an account_key), only the drafts that account may see: its own and
        those written before drafts had an account."""
        self._remove_stale_temp_files()
        drafts: list[Draft] = []
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        for path in entries:
            if path.suffix != ".json" or not _ID.match(path.stem):
                continue
            draft = self._read(path)
            if draft is not None and draft.id == path.stem and (account is None or draft.belongs_to(account)):
                drafts.append(draft)
        drafts.sort(key=_sort_key, reverse=True)
        return drafts

    def delete(self, draft_id: str) -> bool:
        """Remove a draft; False when there was none."""
        try:
            path = self._path(draft_id)
            path.unlink()
        except (DraftError, FileNotFoundError):
            return False
        fsync_dir(self.root)
        return True

    @staticmethod
    def _read(path: Path) -> Draft | None:
        try:
            return Draft.from_dict(json.loads(path.read_bytes().decode("utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            # ValueError covers bad JSON and DraftError; one broken file must not hide the rest.
            return None

    def _remove_stale_temp_files(self) -> None:
        """Temporary files a killed writer left behind (young ones may be in use)."""
        cutoff = time.time() - _STALE_TEMP_SECONDS
        try:
            for path in self.root.glob(".*.tmp"):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                except OSError:
                    pass
        except OSError:
            pass
