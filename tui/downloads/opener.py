"""Opening a saved file with the system's opener (``xdg-open`` on Linux and the BSDs,
``open`` on macOS), only when the person asks. An argument list, never a shell; blocking,
so callers run it in a worker thread. No Textual here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["opener_command", "open_file"]

WAIT_SECONDS = 5.0  # an opener that is still running by then has handed the file over


def opener_command(platform: str | None = None) -> list[str] | None:
    """The opener's argument list (without the file), or None when there is none here."""
    platform = platform or sys.platform
    name = "open" if platform == "darwin" else "xdg-open"
    found = shutil.which(name)
    return [found] if found else None


def open_file(path: str | os.PathLike) -> str:
    """Open ``path`` with the system's opener; returns one sentence saying what happened."""
    path = Path(path)
    shown = path.name
    if not path.is_file():
        return f"{shown} is no longer in {path.parent}, so it was not opened."
    if sys.platform == "win32":  # pragma: no cover - no opener program to find there
        try:
            os.startfile(path)  # type: ignore[attr-defined]
        except OSError as exc:
            return f"Windows could not open {shown} ({exc.strerror}); it is in {path.parent}."
        return f"Opened {shown}."
    command = opener_command()
    if command is None:
        wanted = "open" if sys.platform == "darwin" else "xdg-open"
        return f"There is no program here to open files with ({wanted} was not found); {shown} is in {path.parent}."
    # "--" is not understood by xdg-open; an absolute path cannot be taken for an option anyway.
    try:
        proc = subprocess.Popen([*command, str(path.resolve())], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return f"The opener could not be started ({exc.strerror or type(exc).__name__}); {shown} is in {path.parent}."
    try:
        code = proc.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends
        return f"Opened {shown} with {Path(command[0]).name}."
    if code != 0:
        return (f"{Path(command[0]).name} could not open {shown} (it ended with code {code}); "
                f"the file is in {path.parent}.")
    return f"Opened {shown} with {Path(command[0]).name}."
