"""tui/ is the UI-free library: only app.py (with the two parts split out of it, the key gate
and the terminal cursor rule), cli.py, screens/ and widgets/ import Textual,
so the rest loads fast and tests without a terminal.

Each module is imported in a fresh interpreter (this test process has probably
imported Textual already), and must not pull ``textual`` into ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# With tui.screens.* and tui.widgets.*, the only ones allowed Textual: the app shell, the
# command line, and the app's own key gate, terminal-cursor rule and key parser (kept out of app.py).
UI_MODULES = {"tui.app", "tui.cli", "tui.terminal.key_gate", "tui.terminal.cursor", "tui.terminal.keys"}
UI_PACKAGES = ("tui.screens", "tui.widgets")


def _library_modules() -> list[str]:
    """Every module under tui/ (found by walking the folder) outside the UI layer."""
    names = []
    for path in sorted((REPO / "tui").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name in UI_MODULES or any(name == p or name.startswith(p + ".") for p in UI_PACKAGES):
            continue
        names.append(name)
    return names


MODULES = _library_modules()


def test_the_walk_finds_the_library() -> None:
    assert {"tui", "tui.files", "tui.downloads", "tui.compose", "tui.line.commands"} <= set(MODULES)
    assert not {"tui.app", "tui.cli", "tui.screens.reader", "tui.widgets.footer"} & set(MODULES)


PROBE = (
    "import importlib, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
    "print(','.join(bad))\n"
)


@pytest.mark.parametrize("module", MODULES)
def test_module_does_not_import_textual(module: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing {module} imported {done.stdout.strip()}"
