"""pen-server's runtime stands without the test and demo harness: no module of pen_server
imports pen_devstack (or tui), checked in a fresh interpreter that loads every module; and
pen_rules, which pen_server and tui share, needs only the standard library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, pkgutil, sys
import pen_server
for info in pkgutil.walk_packages(pen_server.__path__, "pen_server."):
    if ".migrations" in info.name or info.name == "pen_server.__main__":
        continue
    importlib.import_module(info.name)
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("pen_devstack", "tui"))))
"""


def _loaded_by(probe: str) -> str:
    """What `probe` prints, run in a fresh interpreter (this one has imported everything)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_pen_server_imports_neither_the_harness_nor_the_client() -> None:
    loaded = _loaded_by(PROBE)
    assert loaded == "", f"pen_server imported {loaded}"


RULES_PROBE = """
import sys
before = set(sys.modules)
import pen_rules.replies
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
print(",".join(sorted(loaded - set(sys.stdlib_module_names) - {"pen_rules"})))
"""


def test_pen_rules_needs_only_the_standard_library() -> None:
    """pen_rules (the reply rule) is shared by pen_server and tui: it may import neither of
    them, nor Textual, nor anything else outside the standard library."""
    loaded = _loaded_by(RULES_PROBE)
    assert loaded == "", f"pen_rules imported {loaded}"
