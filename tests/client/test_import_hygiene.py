"""The logic modules stay free of Textual, so they load fast and test without a terminal.

Each module is imported in a fresh interpreter (this test process has probably
imported Textual already), and must not pull ``textual`` into ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

MODULES = [
    "tui.safe_text",
    "tui.config",
    "tui.credentials",
    "tui.drafts",
    "tui.compose",
    "tui.filenames",
    "tui.htmlbody",
    "tui.pen_client",
    "tui.downloads",
    "tui.raw_body",
    "tui.session",
    "tui.export",
    "tui.demo",
    "tui.demo_data",
    "tui.line.commands",
    "tui.intercept",
    "tui.intercept.imap",
    "tui.intercept.local",
    "tui.intercept.settings",
    "tui.line.intercept",
]
OPTIONAL: list[str] = []

PROBE = (
    "import importlib, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
    "print(','.join(bad))\n"
)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("module", MODULES + OPTIONAL)
def test_module_does_not_import_textual(module: str) -> None:
    if module in OPTIONAL and not _module_exists(module):
        pytest.skip(f"{module} does not exist yet")
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
