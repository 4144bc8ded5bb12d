"""tui/ outside the UI is a library that loads without Textual, checked at run time.

The rule itself is in pyproject.toml's import-linter contracts ("tui: the client library
imports neither Textual nor the UI, even indirectly"), which `lint-imports` checks on every
import statement, deferred ones included. What only a run can show stays here: that the imports
the contract is told to ignore (line mode's hand-over to the full-screen UI) are still deferred,
and that nothing loads Textual by a way no import statement shows (importlib, a plugin, a
dependency). One fresh interpreter (this test process has probably imported Textual already)
imports every library module in turn and says which one first brought ``textual`` in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The UI: the only code allowed Textual (the same list as the contracts' allowed importers).
UI_MODULES = {"tui.app", "tui.cli"}
UI_PACKAGES = ("tui.screens", "tui.widgets", "tui.terminal")


def _library_modules() -> list[str]:
    """Every module under tui/ (found by walking the folder) outside the UI."""
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

PROBE = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "    if 'textual' in sys.modules:\n"
    "        print(name)\n"
    "        break\n"
)


def _first_to_import_textual(modules: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_walk_finds_the_library() -> None:
    assert {"tui", "tui.files", "tui.downloads", "tui.compose", "tui.line.commands", "tui.line.account",
            "tui.signin.session", "tui.demo"} <= set(MODULES)
    assert not {"tui.app", "tui.cli", "tui.screens.reader", "tui.widgets.footer", "tui.terminal.key_gate"} & set(
        MODULES)


def test_no_library_module_imports_textual() -> None:
    first = _first_to_import_textual(MODULES)
    assert first == "", f"importing {first} imported textual"


def test_the_probe_sees_textual() -> None:
    """The probe above can fail: a UI module is caught."""
    assert _first_to_import_textual(["tui.files", "tui.app"]) == "tui.app"


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
    "textual.widgets._text_area",  # no TextArea on the mailbox (tui.terminal.cursor.text_area_class)
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
