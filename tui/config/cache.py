"""The last settings file that passed the checks of tui.config.file, remembered in penmail's
cache folder, so that a start with a file checked before does not load pydantic (about
100 ms of CPU before the first frame).

Only a file that passed is remembered, with what its checks gave. It is used again only for
the same bytes, in the same folder, with the same home folder and the same checks
(tui/config/file.py's size and time); anything else is checked again. A cache that cannot be
read or written is passed by: it only ever saves time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs

CHECKS = Path(__file__).with_name("file.py")


def cache_file() -> Path:
    return Path(platformdirs.user_cache_path("penmail")) / "settings-checked.json"


def _key(file: Path, raw: bytes) -> dict[str, str]:
    checks = CHECKS.stat()
    return {"file": str(file), "home": os.path.expanduser("~"), "checks": f"{checks.st_size}:{checks.st_mtime_ns}",
            "text": raw.decode("utf-8")}


def recall(file: Path, raw: bytes) -> dict[str, Any] | None:
    """What the checks gave for this very file, or None."""
    try:
        stored = json.loads(cache_file().read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == _key(file, raw) and isinstance(stored.get("values"), dict):
            return stored["values"]
    except (OSError, ValueError):
        pass
    return None


def remember(file: Path, raw: bytes, values: dict[str, Any]) -> None:
    """Keep what the checks gave (owner-only: it holds password_command), replacing the last."""
    from tui.files import write_atomic

    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps({"key": _key(file, raw), "values": values}).encode("utf-8"))
    except (OSError, ValueError, TypeError):
        pass
