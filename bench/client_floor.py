"""penmail against its floors (issue 23), the three figures side by side in one run:

1. start-up: a fresh `penmail` process, signed in from a refresh token in the keyring, from
   spawn to its first mailbox frame with rows, against a bare Textual app that shows one
   label (client_mailbox.py's measure), in turns, median of --runs: the ratio (goal <= 1.5);
2. the first page of a 100,000-message inbox, from sign-in to the rows drawn, in this process,
   median of --runs, against the goal of 100 ms (and, for reference, a bare httpx GET of the
   same page on the same server);
3. a 1 GiB attachment saved by tui.downloads (sha256 and fsync kept) against `curl -o` from
   the same server (download_1gib.py's measure), --rounds rounds: the median ratio (goal >= 0.9).

The 1-minute load average is printed before and after each part: the machine is shared.
With --base DIR (another checkout, e.g. `git archive main | tar -x -C DIR`), that tree's
client is timed too, in turns with this one and the bare app, against the same PEN: start-up
and first page before and after a change, in one run, under the same load.

    /work/venv/bin/python bench/client_floor.py [--runs 9] [--rounds 3] [--size-mb 1024] [--json]
    /work/venv/bin/python bench/client_floor.py --base /tmp/penmail-main --rounds 0
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import client_mailbox  # noqa: E402
import download_1gib  # noqa: E402
from server_mailbox import PASSWORD  # noqa: E402

START_GOAL, PAGE_GOAL_MS, DOWNLOAD_GOAL = 1.5, 100.0, 0.9


def load() -> float:
    return round(os.getloadavg()[0], 2)


async def first_page_ms(config) -> tuple[float, float]:
    """Sign in (password), then the time until the first page's rows are drawn, and the
    client's CPU time in it (ms)."""
    from tui.app import PenmailApp

    try:
        from tui.cli import tune_interpreter
    except ImportError:  # a tree from before it sets the switch interval in its app
        pass
    else:
        tune_interpreter()  # as `penmail` does before its app starts
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    async with app.run_test(size=(120, 40)) as pilot:
        _, took, cpu = await client_mailbox.first_page_drawn(app, pilot)
        await app.action_quit()
    return took * 1000, cpu * 1000


# In a child process with a tree's tui/ (cwd), the first page after sign-in in ms.
FIRST_PAGE = (
    "import asyncio, os, sys\n"
    "sys.path.insert(1, sys.argv[1])\n"
    "import client_floor\n"
    "assert 'tui' not in sys.modules\n"
    "sys.path.insert(0, os.getcwd())  # client_floor put this checkout first; the tree's own tui/\n"
    "from tui.config import load_config\n"
    "assert os.path.dirname(sys.modules['tui'].__file__) == os.path.join(os.getcwd(), 'tui')\n"
    "print(*asyncio.run(client_floor.first_page_ms(load_config())))\n"
)


def first_page_in(tree: Path, env: dict) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", FIRST_PAGE, str(ROOT / "bench")], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def bare_get_ms(process, runs: int) -> float:
    """A bare httpx GET /messages of the first page (100 rows, as the list asks), median."""
    import httpx

    with httpx.Client(base_url=process.api, verify=ssl.create_default_context(cafile=str(process.ca_file))) as c:
        token = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
        c.headers["Authorization"] = f"Bearer {token['access_token']}"
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            c.get("/messages", params={"folder": "inbox", "limit": 100}).raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_turns(trees: dict[str, Path], n: int) -> list[tuple[str, Path]]:
    """The trees, first one first in even runs and last first in odd ones: whichever runs
    right after another process (or the bare app) was measured slower under load."""
    order = list(trees.items())
    return order if n % 2 == 0 else order[::-1]


def mailbox_part(args) -> dict:
    out: dict = {"load_before_mailbox": load()}
    trees = {"penmail": ROOT, **({"base": Path(args.base).resolve()} if args.base else {})}
    for tree in trees.values():  # byte-compiled, as an installed package is (PYTHONDONTWRITEBYTECODE)
        for package in ("tui", "pen_rules"):
            compileall.compile_dir(tree / package, quiet=1)
    with client_mailbox.bench_pen(args.messages) as (root, process, config_file, env):
        client_mailbox.remember_sign_in(process, env)
        env = dict(env, PYTHONPATH=str(ROOT / "bench"))  # each tree's tui/ from its folder (cwd)
        # Each tree its own cache folder: penmail remembers the last settings file it checked
        # (tui/config/cache.py, keyed on the checks' file), and two trees in turns, or other
        # penmail processes on the machine, would make every start check it again (pydantic,
        # ~100 ms of CPU) where a person's repeat start does not.
        envs = {name: dict(env, XDG_CACHE_HOME=str(root / f"cache-{name}")) for name in trees}
        for name, tree in trees.items():  # warm the disk cache and the settings cache
            client_mailbox.first_frame(client_mailbox.BARE, env), client_mailbox.first_frame(client_mailbox.PENMAIL,
                                                                                           envs[name], tree)
        times: dict[str, list[float]] = {"bare": [], **{name: [] for name in trees}}
        cpu_s: dict[str, list[float]] = {name: [] for name in times}
        for n in range(args.runs):  # in turns, so that other load falls on each alike
            for name, tree in [("bare", ROOT), *in_turns(trees, n)]:
                took, used = client_mailbox.first_frame_and_cpu(
                    client_mailbox.BARE if name == "bare" else client_mailbox.PENMAIL, envs.get(name, env), tree)
                times[name].append(took)
                cpu_s[name].append(used)
        bare, bare_cpu = statistics.median(times["bare"]), statistics.median(cpu_s["bare"])
        for name in times:
            out[f"{name}_ms"] = [round(t * 1000) for t in times[name]]
            out[f"{name}_cpu_ms"] = [round(t * 1000) for t in cpu_s[name]]
        for name in trees:
            out[f"{name}_startup_ratio"] = round(statistics.median(times[name]) / bare, 2)
            out[f"{name}_startup_cpu_ratio"] = round(statistics.median(cpu_s[name]) / bare_cpu, 2)
        out["startup_ratio"] = out["penmail_startup_ratio"]
        out["load_after_startup"] = load()

        page_env = {name: dict(envs[name], PENMAIL_CONFIG=str(config_file), PENMAIL_STATE_DIR=str(root / "state"))
                    for name in trees}
        pages: dict[str, list[float]] = {name: [] for name in trees}
        cpus: dict[str, list[float]] = {name: [] for name in trees}
        for n in range(args.runs):
            for name, tree in in_turns(trees, n):
                wall, cpu = first_page_in(tree, page_env[name])
                pages[name].append(wall)
                cpus[name].append(cpu)
        for name in trees:
            out[f"{name}_first_page_ms"] = [round(p, 1) for p in pages[name]]
            out[f"{name}_first_page_median_ms"] = round(statistics.median(pages[name]), 1)
            out[f"{name}_first_page_cpu_median_ms"] = round(statistics.median(cpus[name]), 1)
        out["first_page_ms"] = out["penmail_first_page_ms"]
        out["first_page_ratio"] = round(statistics.median(pages["penmail"]) / PAGE_GOAL_MS, 2)
        out["bare_get_ms"] = round(bare_get_ms(process, args.runs), 1)
        out["load_after_mailbox"] = load()
    return out


def download_part(args) -> dict:
    if not args.rounds:
        return {}
    dl = argparse.Namespace(size_mb=args.size_mb, rounds=args.rounds, workdir=args.workdir, keep=False)
    results = download_1gib.parent(dl)
    ratios = [r["curl_seconds"] / r["seconds"] for r in results["rounds"]]  # rate tui / rate curl
    return {"download_ratios": [round(r, 2) for r in ratios], "download_ratio": round(statistics.median(ratios), 2),
            "download_verified": all(r["verified"] and r["curl_verified"] for r in results["rounds"]),
            "download_mib_s": [round(download_1gib.mbps(args.size_mb * download_1gib.MIB, r["seconds"]), 1)
                               for r in results["rounds"]],
            "curl_mib_s": [round(download_1gib.mbps(args.size_mb * download_1gib.MIB, r["curl_seconds"]), 1)
                           for r in results["rounds"]],
            "load_download": [round(results["loadavg_before"][0], 2), round(results["loadavg_after"][0], 2)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=9, help="start-ups and first pages (each, median)")
    ap.add_argument("--rounds", type=int, default=3, help="download rounds (median)")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--base", help="another checkout whose client is timed in turns with this one")
    ap.add_argument("--workdir", help="where the download's PEN and files live (default: the temp folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"cpus": os.cpu_count(), **mailbox_part(args), **download_part(args)}
    if args.json:
        print(json.dumps(result, indent=2))
    print()
    print(f"{'figure':44s} {'measured':>10s} {'goal':>8s}  per run")
    print(f"{'start-up, penmail / bare Textual app':44s} {result['startup_ratio']:10.2f} {'<= 1.5':>8s}  "
          f"penmail {result['penmail_ms']} ms, bare {result['bare_ms']} ms")
    if args.base:
        print(f"{'  the same, --base tree':44s} {result['base_startup_ratio']:10.2f} {'':>8s}  "
              f"base {result['base_ms']} ms")
    print(f"{'  CPU time to that frame, penmail / bare':44s} {result['penmail_startup_cpu_ratio']:10.2f} {'':>8s}  "
          f"penmail {result['penmail_cpu_ms']} ms, bare {result['bare_cpu_ms']} ms")
    if args.base:
        print(f"{'  the same, --base tree':44s} {result['base_startup_cpu_ratio']:10.2f} {'':>8s}  "
              f"base {result['base_cpu_ms']} ms")
    print(f"{'first page after sign-in / 100 ms':44s} {result['first_page_ratio']:10.2f} {'<= 1.0':>8s}  "
          f"{result['first_page_ms']} ms, client CPU median {result['penmail_first_page_cpu_median_ms']} ms "
          f"(bare httpx GET of it: {result['bare_get_ms']} ms)")
    if args.base:
        ratio = result["penmail_first_page_median_ms"] / result["base_first_page_median_ms"]
        print(f"{'  this / --base tree (medians)':44s} {ratio:10.2f} {'':>8s}  base {result['base_first_page_ms']} ms, "
              f"client CPU median {result['base_first_page_cpu_median_ms']} ms")
    if args.rounds:
        print(f"{'1 GiB download, tui / curl -o (rates)':44s} {result['download_ratio']:10.2f} {'>= 0.9':>8s}  "
              f"{result['download_ratios']}, tui {result['download_mib_s']} MiB/s, curl {result['curl_mib_s']} MiB/s, "
              f"verified={result['download_verified']}")
    downloads = (f"; downloads {result['load_download'][0]} before, {result['load_download'][1]} after"
                 if args.rounds else "")
    print(f"1-minute load average: {result['load_before_mailbox']} before, {result['load_after_startup']} after the "
          f"start-ups, {result['load_after_mailbox']} after the first pages{downloads} ({result['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
