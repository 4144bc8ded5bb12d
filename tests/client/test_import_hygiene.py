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
UI_MODULES = {"tui.app", "tui.cli", "tui.key_gate", "tui.terminal_cursor", "tui.terminal_keys"}
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


# Start-up (issue 23): what the first mailbox frame does not need is imported when first used.
# The real app, headless, its first frame drawn while its quiet sign-in waits on a server that
# accepts the connection and never answers; then what is in sys.modules.
FIRST_FRAME = (
    "import sys\n"
    "from tui.config import load_config\n"
    "from tui.app import PenmailApp\n"
    "from tui.screens.mailbox import MailboxScreen\n"
    "class App(PenmailApp):\n"
    "    def on_mount(self):\n"
    "        self.call_after_refresh(self.seen)\n"
    "    def seen(self):\n"
    "        self.exit(sorted(sys.modules) if isinstance(self.screen, MailboxScreen) else None)\n"
    "found = App(load_config(), env={'PENMAIL_PASSWORD': 'x'}, use_keyring=False).run(headless=True)\n"
    "print(','.join(found or ['no mailbox frame']))\n"
)

NOT_BEFORE_THE_FIRST_FRAME = [
    "email_validator",  # tui.config checks a plain address without it
    "textual.widgets._text_area",  # no TextArea on the mailbox (tui.terminal_cursor.text_area_class)
    "tui.screens.help",  # F1
    "tui.widgets.reading_text",
    "tui.screens.reader",
    "tui.screens.signin",
    "tui.screens.compose",
    "tui.screens.drafts",
]


def test_the_first_frame_imports_only_what_it_needs(tmp_path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel and never answered
    try:
        port = silent.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(f'server = "https://127.0.0.1:{port}"\nemail = "reader@bench.example"\n')
        env = dict(os.environ, PENMAIL_CONFIG=str(config), PENMAIL_STATE_DIR=str(tmp_path / "state"),
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run([sys.executable, "-c", FIRST_FRAME], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.strip().splitlines()[-1].split(","))
    assert "tui.screens.mailbox" in loaded, done.stdout[-500:]
    assert [m for m in NOT_BEFORE_THE_FIRST_FRAME if m in loaded] == []
