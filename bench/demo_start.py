"""How long `penmail demo` keeps a newcomer waiting: from the command to the first frame
that shows rows of the inbox, on a fresh home folder (the FIRST start) and again (the
SECOND), each beside a bare Textual app's start measured the same way in the same round.

Each start runs in a detached tmux session (160x50) with HOME and XDG_CACHE_HOME pointed at
empty temporary folders (no keyring, no cache, no config) and polls `tmux capture-pane`
every 20 ms until the screen shows a sender of the demo's mail (a name no progress line
prints), or the bare app's one line, then presses `q` and waits for the session to end.

A round is: the bare app, the demo's first start on a new home folder, its second start on
the same one. Printed: each round, the medians, and the ratios first/bare and second/bare
(issue 23: the first start at most 12 times the bare app's).

    /work/venv/bin/python bench/demo_start.py              # three rounds
    /work/venv/bin/python bench/demo_start.py --rounds 5 --json
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
sys.path.insert(0, str(Path(__file__).parent))

from tui.demo.data import DEMO_EMAIL, PEOPLE  # noqa: E402

NAMES = [p.name for p in PEOPLE.values() if p.email != DEMO_EMAIL]


def _pane(session: str) -> str:
    done = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


def one_run(command: str, env: dict[str, str], timeout: float, marks: list[str]) -> float:
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
            if any(mark in screen for mark in marks):
                return elapsed
            if elapsed > timeout or not _alive(session):
                raise RuntimeError(f"nothing awaited on the screen after {elapsed:.1f} s; the screen was:\n{screen}")
            time.sleep(0.02)
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
        deadline = time.monotonic() + 30
        while _alive(session) and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def bare_command() -> str:
    return f"{sys.executable} {Path(__file__).with_name('bare_textual.py')}"


def one_round(command: str, timeout: float) -> dict[str, float]:
    from bare_textual import MARK

    with tempfile.TemporaryDirectory(prefix="demo-start-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share"), "PYTHONPATH": str(REPO), "TERM": "xterm-256color",
               "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        bare = one_run(bare_command(), env, timeout, [MARK])
        first = one_run(command, env, timeout, NAMES)
        second = one_run(command, env, timeout, NAMES)
    return {"bare": bare, "first": first, "second": second}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0)
    here = Path(sys.executable).parent / "penmail"
    parser.add_argument("--command", default=f"{here if here.exists() else shutil.which('penmail')} demo")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("tmux"):
        print("This benchmark needs tmux.", file=sys.stderr)
        return 2
    loads = [os.getloadavg()[0]]
    rounds = []
    for _ in range(args.rounds):
        rounds.append(one_round(args.command, args.timeout))
        loads.append(os.getloadavg()[0])
        if not args.json:
            r = rounds[-1]
            print(f"bare Textual {r['bare']:.2f} s, demo first {r['first']:.2f} s, second {r['second']:.2f} s "
                  f"(1-minute load {loads[-1]:.2f})", flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in ("bare", "first", "second")}
    result = {"rounds": [{k: round(v, 2) for k, v in r.items()} for r in rounds],
              "median_seconds": {k: round(v, 2) for k, v in med.items()},
              "first_over_bare": round(med["first"] / med["bare"], 1),
              "second_over_bare": round(med["second"] / med["bare"], 1),
              "load_1min": [round(x, 2) for x in loads]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"median of {len(rounds)}: bare Textual {med['bare']:.2f} s, first {med['first']:.2f} s "
              f"({result['first_over_bare']}x), second {med['second']:.2f} s ({result['second_over_bare']}x); "
              f"1-minute load {min(loads):.2f}-{max(loads):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
