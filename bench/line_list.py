"""`penmail list` cold start: a fresh process, timed from spawn to its first line on standard
output, signed in from a refresh token in the keyring as a person is after `penmail login`,
against `python -c pass` (spawn to exit), median of several runs taken in turns, as a ratio.
(himalaya, the usual comparison, is not in Debian 12.) Loopback only.

    /work/venv/bin/python bench/line_list.py [--messages 10000] [--runs 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from client_mailbox import bench_pen  # noqa: E402
from server_mailbox import PASSWORD  # noqa: E402


def first_line(argv: list[str], env: dict) -> tuple[float, float]:
    """Seconds from spawn to the first line on stdout, and to the process's end."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    first = time.perf_counter() - start
    proc.stdout.read()
    err = proc.stderr.read()
    proc.wait()
    if proc.returncode != 0 or (argv[-1] != "pass" and not line):
        raise SystemExit(f"{argv} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return first, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict = {"messages": args.messages, "runs": args.runs}
    with bench_pen(args.messages) as (_root, _process, _config, env):
        login = subprocess.run([sys.executable, "-m", "tui.cli", "login"], input=PASSWORD + "\n", text=True,
                               env=env, cwd=ROOT, capture_output=True)
        if login.returncode != 0:
            raise SystemExit(f"penmail login failed: {login.stderr}")
        penmail = [sys.executable, "-m", "tui.cli", "list"]
        bare = [sys.executable, "-c", "pass"]
        first_line(bare, env), first_line(penmail, env)  # warm the disk cache
        py, pm_first, pm_end = [], [], []
        for _ in range(args.runs):  # in turns, so that other load falls on both alike
            py.append(first_line(bare, env)[1])
            a, b = first_line(penmail, env)
            pm_first.append(a)
            pm_end.append(b)
    out["python_c_pass_ms"] = round(statistics.median(py) * 1000, 1)
    out["penmail_list_first_line_ms"] = round(statistics.median(pm_first) * 1000, 1)
    out["penmail_list_exit_ms"] = round(statistics.median(pm_end) * 1000, 1)
    out["ratio_first_line"] = round(statistics.median(pm_first) / statistics.median(py), 1)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"penmail list, cold start, median of {args.runs} (signed in from the keyring, {args.messages} messages):"
        )
        print(f"  python -c pass            {out['python_c_pass_ms']} ms")
        print(f"  penmail list, first line  {out['penmail_list_first_line_ms']} ms   ratio {out['ratio_first_line']}")
        print(f"  penmail list, exit        {out['penmail_list_exit_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
