"""Completing a file path as it is typed: the folders and files of the typed folder whose
names begin with the typed rest (folders end in "/"). The folder is read in a thread, so a
slow network drive never stalls the screen."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from textual.suggester import Suggester

MAX_ENTRIES = 5000  # a folder with more is read only this far


def complete_path(value: str) -> str | None:
    """The first entry (folders first, then by name) that extends ``value``, as ``value`` plus the rest."""
    folder_text, sep, prefix = value.rpartition("/")
    folder_text = folder_text + sep
    folder = Path(os.path.expanduser(folder_text or ".")) if (folder_text or not value.startswith("~")) else None
    if folder is None:  # "~" or "~ann" alone: complete to the home folder
        return value + "/" if value == "~" else None
    show_hidden = prefix.startswith(".")
    matches: list[tuple[bool, str]] = []
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_ENTRIES:
                    break
                name = entry.name
                if not name.startswith(prefix) or name == prefix or (name.startswith(".") and not show_hidden):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                matches.append((not is_dir, name + ("/" if is_dir else "")))
    except OSError:
        return None
    if not matches:
        return None
    matches.sort()
    return folder_text + matches[0][1]


class PathSuggester(Suggester):
    """A Textual Suggester over the file system (right arrow accepts, as in any Input)."""

    def __init__(self) -> None:
        # No cache: files come and go while the prompt is open.
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value or "\x00" in value:
            return None
        return await asyncio.to_thread(complete_path, value)
