"""Editing text in the person's own editor: ``$EDITOR`` (or ``$VISUAL``, else ``vi``) runs
on a private temporary file while the app hands the terminal over, from an argument list
(never a shell), and the text comes back through the safe-text path."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from textual.app import App, SuspendNotSupported

from tui.safe_text import clean, one_line


def editor_command(env: Mapping[str, str]) -> list[str]:
    """The editor as an argument list ("code --wait" is two); [] when it cannot be parsed."""
    try:
        return shlex.split(env.get("EDITOR") or env.get("VISUAL") or "vi")
    except ValueError:
        return []


def edit_text(app: App, text: str, folder: Path, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """(the edited text, or None when unchanged; a sentence saying what happened)."""
    command = editor_command(os.environ if env is None else env)
    if not command:
        return None, "$EDITOR cannot be read as a command; set it to an editor, such as vi."
    # A private file (0600) in the drafts folder (0700), not in a shared /tmp.
    fd, name = tempfile.mkstemp(prefix=".edit-", suffix=".txt", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            with app.suspend():
                done = subprocess.run([*command, name], check=False)
        except SuspendNotSupported:
            return None, "This terminal cannot be handed to an editor; write the body here."
        except OSError as exc:
            return None, (f"The editor {one_line(command[0], 60)} could not be started "
                          f"({exc.strerror or exc}); set $EDITOR to one that is installed.")
        if done.returncode != 0:
            return None, f"The editor stopped with status {done.returncode}; the body is unchanged."
        edited = Path(name).read_text(encoding="utf-8", errors="replace")
    finally:
        Path(name).unlink(missing_ok=True)
    return clean(edited), "The body is back from the editor."
