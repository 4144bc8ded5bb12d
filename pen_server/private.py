"""The data folder holds every message body, the password hashes, the TLS key and the SMTP
relay password: only its owner may read it. The folder is 0700 and each file 0600, by a
umask for everything the process makes (SQLite's database, -wal and -shm included) and by
explicit modes where we create files ourselves."""

from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# A big PEN has many blobs: looking at this many entries is enough to notice a folder
# that was copied or unpacked with loose modes, and it takes milliseconds.
CHECK_LIMIT = 10_000


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write `data` to a new file of mode 0600 (whatever the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), FILE_MODE)  # an existing file keeps its mode through O_TRUNC
        f.write(data)


def make_private_dir(path: Path) -> None:
    """`path` (and missing parents) as a folder; the folder itself 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def open_to_others(data_dir: Path) -> Path | None:
    """The first of the data folder or the entries in it that group or others may use, or
    None. Looks at no more than CHECK_LIMIT entries."""
    seen = 0
    for folder, dirs, files in os.walk(data_dir):
        for name in [None, *files, *dirs]:
            path = Path(folder) if name is None else Path(folder) / name
            if name is None and Path(folder) != data_dir:
                continue  # a sub-folder is looked at as an entry of its parent
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                return path
            seen += 1
            if seen >= CHECK_LIMIT:
                return None
    return None


def loose_modes_warning(data_dir: Path) -> str | None:
    """One sentence for the administrator when the data folder is open to other users."""
    found = open_to_others(data_dir)
    if found is None:
        return None
    what = "The data folder" if found == data_dir else f"{found.relative_to(data_dir)} in the data folder"
    return (f"warning: {what} {data_dir} can be read by other users of this machine (it holds messages, "
            f"password hashes and keys); make it private with: chmod -R go-rwx {data_dir}")
