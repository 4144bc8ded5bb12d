"""How long `penmail demo` keeps a newcomer waiting: from the command to the first frame
that shows rows of the inbox, median of several runs.

Each run starts `penmail demo` in a detached tmux session (160x50) and polls
`tmux capture-pane` every 20 ms until the screen shows a sender of the demo's mail (a
name no progress line prints), then presses `q` and waits for the session to end.

The demo's prepared data is cached in the user's cache folder; this script points
XDG_CACHE_HOME at a temporary folder of its own, so the first run (not counted in the
median, printed as "cold") prepares it and the counted runs reuse it, as a person's second
`penmail demo` would. `--no-prime` counts the first run too.

    /work/venv/bin/python bench/demo_start.py            # five runs after a priming one
    /work/venv/bin/python bench/demo_start.py --runs 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tui.demo.data import DEMO_EMAIL, PEOPLE  # noqa: E402

NAMES = [p.name for p in PEOPLE.values() if p.email != DEMO_EMAIL]


def _pane(session: str) -> str:
    done = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


def one_run(command: str, env: dict[str, str], timeout: float) -> float:
    session = "demo-start-" + uuid.uuid4().hex[:8]
    # tmux passes the server's environment; the command names what differs.
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    began = time.monotonic()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    f"env {exports} {command}; sleep 1"], check=True)
    try:
        while True:
            elapsed = time.monotonic() - began
            screen = _pane(session)
            if any(name in screen for name in NAMES):
                return elapsed
            if elapsed > timeout or not _alive(session):
                raise RuntimeError(f"no inbox rows after {elapsed:.1f} s; the screen was:\n{screen}")
            time.sleep(0.02)
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
        deadline = time.monotonic() + 30
        while _alive(session) and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--no-prime", action="store_true", help="count the first (cold) run too")
    here = Path(sys.executable).parent / "penmail"
    parser.add_argument("--command", default=f"{here if here.exists() else shutil.which('penmail')} demo")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("tmux"):
        print("This benchmark needs tmux.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="demo-start-") as tmp:
        env = {"XDG_CACHE_HOME": str(Path(tmp) / "cache"), "PYTHONPATH": str(REPO),
               "TERM": "xterm-256color", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        cold = None if args.no_prime else one_run(args.command, env, args.timeout)
        times = [one_run(args.command, env, args.timeout) for _ in range(args.runs)]
    load = os.getloadavg()[0]
    result = {"runs": [round(t, 2) for t in times], "median_seconds": round(statistics.median(times), 2),
              "cold_seconds": round(cold, 2) if cold is not None else None, "load_1min": round(load, 2)}
    if args.json:
        print(json.dumps(result))
    else:
        if cold is not None:
            print(f"first (cold) run: {cold:.2f} s")
        print(f"runs: {', '.join(f'{t:.2f}' for t in times)} s")
        print(f"median of {len(times)}: {result['median_seconds']:.2f} s (1-minute load {load:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
