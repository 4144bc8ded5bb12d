"""pen-server's runtime stands without the test and demo harness: no module of pen_server
imports pen_devstack (or tui), checked in a fresh interpreter that loads every module."""

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


def test_pen_server_imports_neither_the_harness_nor_the_client() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"pen_server imported {done.stdout.strip()}"
