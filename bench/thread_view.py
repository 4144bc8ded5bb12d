"""penmail benchmark for issue 10: the thread view beside the plain list, in one run, over
a folder of 100,000 messages in threads of `--thread-size` (bulk-written, as in
bench/server_mailbox.py), on loopback TLS, in one penmail (Pilot, 120x40):

1. Opening: the key that shows the view (T for threads, T again for the list) until its
   first page is drawn; the median of `--runs` openings of each, taken in turns.
2. End (G) until the last row is drawn, and how many page requests that took.
3. Page-down from the top through `--walk-rows` rows (each press waits until its rows are
   drawn): time, requests, and the process's resident memory before and after (MiB).

Each figure of the thread view is also given as a ratio to the list's.

    /work/venv/bin/python bench/thread_view.py [--messages 100000] [--thread-size 3] [--runs 5] [--walk-rows 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from client_mailbox import bench_pen, page_down_walk  # noqa: E402
from server_mailbox import PASSWORD  # noqa: E402


async def until(pilot, condition) -> None:
    while not condition():
        await pilot.pause(0.001)


async def views_run(config, runs: int, walk_rows: int) -> dict:
    from tui.app import PenmailApp
    from tui.cli import tune_interpreter
    from tui.pen_client import PenClient
    from tui.screens.mailbox import MailboxScreen
    from tui.widgets.message_list import MessageList

    requests: list[str] = []
    originals = {name: getattr(PenClient, name) for name in ("list_messages", "list_threads")}

    def counted(name):
        async def call(self, *args, **kw):
            requests.append(name)
            return await originals[name](self, *args, **kw)
        return call

    for name in originals:
        setattr(PenClient, name, counted(name))
    out: dict = {"list": {}, "threads": {}}
    tune_interpreter()  # as `penmail` does before its app starts (tui/cli.py)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MailboxScreen) and app.screen.signing_in_as is None
                    and app.screen.query(MessageList))
        mailbox = app.screen
        ml = mailbox.query_one(MessageList)
        await until(pilot, lambda: ml.loaded_once and ml.highlighted is not None)

        def drawn(threads: bool) -> bool:
            return ml.threads == threads and ml.loaded_once and ml.highlighted is not None and not ml._loading

        opening: dict[str, list[float]] = {"list": [], "threads": []}
        for _ in range(runs):
            for view in ("threads", "list"):
                t = time.perf_counter()
                await pilot.press("T")
                await until(pilot, lambda v=view: drawn(v == "threads"))
                await pilot.pause()  # the frame with the rows
                opening[view].append((time.perf_counter() - t) * 1000)
        for view in ("list", "threads"):
            res = out[view]
            if (view == "threads") != ml.threads:
                await pilot.press("T")
                await until(pilot, lambda v=view: drawn(v == "threads"))
            res["open_ms"] = round(statistics.median(opening[view]), 1)
            res["rows"] = ml.total
            requests.clear()
            t = time.perf_counter()
            await pilot.press("G")
            await until(pilot, lambda: ml.cursor == ml.rows - 1 and ml.highlighted is not None)
            await pilot.pause()
            res["end_ms"] = round((time.perf_counter() - t) * 1000, 1)
            res["end_requests"] = len(requests)
            res.update(await page_down_walk(pilot, ml, walk_rows, requests))
            await pilot.press("g")
            await until(pilot, lambda: ml.highlighted is not None and ml.cursor == 0)
    for name, fn in originals.items():
        setattr(PenClient, name, fn)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--thread-size", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--walk-rows", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict = {"messages": args.messages, "thread_size": args.thread_size}
    with bench_pen(args.messages, args.thread_size) as (root, process, config_file, env):
        from tui.config import load_config

        os.environ.update(PENMAIL_CONFIG=str(config_file), PENMAIL_STATE_DIR=str(root / "state"))
        result.update(asyncio.run(views_run(load_config(), args.runs, args.walk_rows)))
    lst, thr = result["list"], result["threads"]
    result["ratios"] = {k: round(thr[k] / lst[k], 2) if lst[k] else None
                        for k in ("open_ms", "end_ms", "walk_s", "walk_requests")}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"folder of {args.messages} messages, threads of {args.thread_size}: "
          f"{lst['rows']} list rows, {thr['rows']} thread rows")
    print(f"{'':28}{'list':>10}{'threads':>10}{'ratio':>8}")
    for key, label in (("open_ms", f"open, first page (ms, median of {args.runs})"), ("end_ms", "End, last row (ms)"),
                       ("end_requests", "End, requests"), ("walk_s", "page-down walk (s)"),
                       ("walk_requests", "walk, requests"), ("rss_growth_mib", "walk, memory growth (MiB)"),
                       ("pages_in_memory", "pages kept")):
        ratio = result["ratios"].get(key)
        print(f"{label:36}{lst[key]:>10}{thr[key]:>10}{'' if ratio is None else ratio:>8}")
    print(f"walked {lst['walk_rows']} list rows and {thr['walk_rows']} thread rows; memory "
          f"{lst['rss_start_mib']} -> {lst['rss_end_mib']} MiB (list), {thr['rss_start_mib']} -> "
          f"{thr['rss_end_mib']} MiB (threads); target: threads open within 300 ms, growth < 50 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
