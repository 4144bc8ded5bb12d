"""Attachment bytes on disk, addressed by sha256. Paths come from the hash, never from a
file name; uploads stream to a temporary file and are moved into place once hashed."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from pen_server.private import DIR_MODE, FILE_MODE, make_private_dir

_HEX = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path, tmp: Path):
        self.root, self.tmp = root, tmp
        make_private_dir(root)
        make_private_dir(tmp)

    def path(self, sha256: str) -> Path:
        if not _HEX.match(sha256):
            raise ValueError("not a sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def new_temp(self) -> tuple[Path, int]:
        path = self.tmp / f"upload-{secrets.token_hex(16)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        return path, fd

    def commit_temp(self, temp: Path, sha256: str) -> Path:
        """Move a finished upload into place (or drop it when that blob exists already)."""
        final = self.path(sha256)
        if final.is_file():
            temp.unlink(missing_ok=True)
            return final
        final.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(temp, final)
        return final

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clean_temp(self) -> None:
        for leftover in self.tmp.glob("upload-*"):
            leftover.unlink(missing_ok=True)


class Hasher:
    """sha256 and size of a stream, for both the blob name and the digest header."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)
