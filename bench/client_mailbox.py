"""penmail benchmarks for issue 3, each in one run:

1. Start-up to the first mailbox frame, signed in, against a bare Textual app that shows one
   label: each is a fresh process, timed from spawn to the first frame (the process prints
   the moment and exits), median of several runs, as a ratio.
2. A mailbox of 100,000 messages: the first page drawn after sign-in (ms); `G` (End) until
   the last row is drawn, and how many list requests that took (one page from the bottom,
   order=oldest); then, back at the top, page-down presses through the first 20,000 rows
   (each waiting until its rows are drawn), and the client's resident memory before and
   after that walk (MiB) with the pages the list keeps.

    /work/venv/bin/python bench/client_mailbox.py [--messages 100000] [--runs 5] [--walk-rows 20000]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from server_mailbox import PASSWORD, make_bench_pen  # noqa: E402

from pen_devstack import PenProcess, SmtpSink  # noqa: E402

BARE = textwrap.dedent("""
    import time, sys
    from textual.app import App
    from textual.widgets import Label
    class Bare(App):
        def compose(self):
            yield Label("hello")
        def on_mount(self):
            self.call_after_refresh(self.done)
        def done(self):
            print(time.time(), time.process_time(), flush=True)
            self.exit()
    Bare().run(headless=True)
""")

PENMAIL = textwrap.dedent("""
    import time, sys
    import tui.app
    from tui.app import PenmailApp
    from tui.cli import main
    from tui.screens.mailbox import MailboxScreen
    from tui.widgets.message_list import MessageList

    class Timed(PenmailApp):
        seen = False
        def on_mount(self):  # Textual runs PenmailApp.on_mount too (handlers along the MRO)
            self.set_interval(0.002, self.check)
        def check(self):
            found = self.screen.query(MessageList) if isinstance(self.screen, MailboxScreen) else []
            if found and found.first().loaded_once and found.first().highlighted is not None and not self.seen:
                self.seen = True
                self.call_after_refresh(self.done)
        async def done(self):
            print(time.time(), time.process_time(), flush=True)
            await self.action_quit()  # waits until the rotated refresh token is in the keyring
        def run(self, **kw):
            return super().run(headless=True, **kw)
    tui.app.PenmailApp = Timed  # `penmail` itself (tui.cli.main), with this app in it
    sys.exit(main([]))
""")


def first_frame(code: str, env: dict, tree: Path = ROOT) -> float:
    """Seconds from spawn to the moment `code` prints, run with `tree`'s tui/ (its folder first
    on the path)."""
    return first_frame_and_cpu(code, env, tree)[0]


def first_frame_and_cpu(code: str, env: dict, tree: Path = ROOT) -> tuple[float, float]:
    """first_frame's seconds, and the CPU seconds the process had used by then (its own, all
    threads): under load the wall time stretches, the CPU time much less."""
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tree)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    at, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(at) - start, float(cpu)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def scroll_run(config, walk_rows: int = 20_000) -> dict:
    """In this process: sign in, time the first page, then End to the last row, then a walk
    down `walk_rows` rows with page-down, measuring memory before and after it."""

    from tui.app import PenmailApp
    from tui.cli import tune_interpreter
    from tui.pen_client import PenClient

    requests: list[str] = []
    list_messages = PenClient.list_messages

    async def counted(self, *args, **kw):
        requests.append(kw.get("order", "newest"))
        return await list_messages(self, *args, **kw)

    PenClient.list_messages = counted  # type: ignore[method-assign]

    tune_interpreter()  # as `penmail` does before its app starts (tui/cli.py)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    out: dict = {}
    async with app.run_test(size=(120, 40)) as pilot:
        ml, took, _ = await first_page_drawn(app, pilot)
        out["first_page_ms"] = round(took * 1000, 1)
        requests.clear()
        t = time.perf_counter()
        await pilot.press("G")
        while ml.cursor < ml.total - 1 or ml.highlighted is None:
            await pilot.pause(0.001)
        await pilot.pause()  # the frame with the last row
        out["end_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["end_requests"] = len(requests)
        out["last_row"] = ml.highlighted.subject
        out.update(await page_down_walk(pilot, ml, walk_rows, requests))
        out["walk_row"] = ml.highlighted.subject
    PenClient.list_messages = list_messages  # type: ignore[method-assign]
    return out


async def first_page_drawn(app, pilot):
    """The message list, and the seconds from sign-in until its first page's rows are drawn
    (wall time, and this process's CPU time over the same stretch)."""
    from tui.screens.mailbox import MailboxScreen
    from tui.widgets.message_list import MessageList

    while app.session is None:  # signed in from here on
        await pilot.pause(0.001)
    signed_in, cpu = time.perf_counter(), time.process_time()
    while not (isinstance(app.screen, MailboxScreen) and app.screen.query(MessageList)):
        await pilot.pause(0.001)
    ml = app.screen.query_one(MessageList)
    while not (ml.loaded_once and ml.highlighted is not None):
        await pilot.pause(0.001)
    await pilot.pause()  # the frame with the rows
    return ml, time.perf_counter() - signed_in, time.process_time() - cpu


async def page_down_walk(pilot, ml, walk_rows: int, requests: list) -> dict:
    """From the top (g), page-down through `walk_rows` rows, each press waiting until its
    rows are drawn: the time, the requests, and the resident memory before and after."""
    import gc

    out: dict = {}
    await pilot.press("g")
    while ml.highlighted is None or ml.cursor:
        await pilot.pause(0.001)
    await pilot.pause()
    gc.collect()
    out["rss_start_mib"] = round(rss_mib(), 1)
    requests.clear()
    walk = min(walk_rows, ml.rows - 1)
    t = time.perf_counter()
    while ml.cursor < walk:
        await pilot.press("pagedown")
        while ml.highlighted is None or ml._loading:  # the rows drawn before the next press
            await pilot.pause(0.001)
    await pilot.pause()
    out["walk_rows"] = ml.cursor
    out["walk_s"] = round(time.perf_counter() - t, 1)
    out["walk_requests"] = len(requests)
    gc.collect()
    out["rss_end_mib"] = round(rss_mib(), 1)
    out["rss_growth_mib"] = round(out["rss_end_mib"] - out["rss_start_mib"], 1)
    out["pages_in_memory"] = len(ml._pages)
    return out


@contextlib.contextmanager
def bench_pen(messages: int, thread_size: int = 1):
    """A PEN on loopback TLS whose reader@bench.example holds ``messages`` messages, a penmail
    settings file for that reader, and an environment whose keyring is a file (so each
    penmail process starts signed in, as a person's does); yields (root, process, settings
    file, environment), and removes it all afterwards."""
    # As an installed package would be: byte-compiled (this environment may set
    # PYTHONDONTWRITEBYTECODE, and a changed module would then be compiled at every start).
    compileall.compile_dir(ROOT / "tui", quiet=1)
    root = Path(tempfile.mkdtemp(prefix="penmail-bench-"))
    sink = SmtpSink().start()
    try:
        port = make_bench_pen(root / "pen", messages, thread_size)
        process = PenProcess(root / "pen", port, smtp_port=sink.port).start()
        try:
            config_file = root / "config.toml"
            config_file.write_text(f'server = "{process.url}"\nca_file = "{process.ca_file}"\n'
                                   f'email = "reader@bench.example"\n')
            env = dict(os.environ, PENMAIL_CONFIG=str(config_file), PENMAIL_STATE_DIR=str(root / "state"),
                       PYTHONPATH=f"{ROOT}:{ROOT / 'bench'}", PYTHON_KEYRING_BACKEND="file_keyring.FileKeyring",
                       BENCH_KEYRING_FILE=str(root / "keyring.json"),
                       # Headless, Textual lays out at Rich's 80x25 and then resizes to the
                       # driver's 80x24 (a second layout a real terminal does not make): one size.
                       COLUMNS="80", LINES="24")
            env.pop("PENMAIL_PASSWORD", None)
            yield root, process, config_file, env
        finally:
            process.stop()
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


def remember_sign_in(process, env: dict) -> None:
    """Sign in once in a child process with `env`'s keyring, so that penmail starts signed in."""
    remember = (
        f"import asyncio\nfrom tui.signin.session import Session\n"
        f"async def go():\n    s = Session({process.url!r}, 'reader@bench.example', {str(process.ca_file)!r})\n"
        f"    await s.login({PASSWORD!r})\n    await s.settle()\nasyncio.run(go())\n"
    )
    subprocess.run([sys.executable, "-c", remember], env=env, check=True, cwd=ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--walk-rows", type=int, default=20_000, help="rows to walk down with page-down")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict = {"messages": args.messages}
    with bench_pen(args.messages) as (root, process, config_file, env):
        remember_sign_in(process, env)
        first_frame(BARE, env), first_frame(PENMAIL, env)  # warm the disk cache
        bare, pen = [], []
        for _ in range(args.runs):  # in turns, so that other load falls on both alike
            bare.append(first_frame(BARE, env))
            pen.append(first_frame(PENMAIL, env))
        result["bare_first_frame_ms"] = round(statistics.median(bare) * 1000)
        result["penmail_first_mailbox_frame_ms"] = round(statistics.median(pen) * 1000)
        result["startup_ratio"] = round(statistics.median(pen) / statistics.median(bare), 2)

        import asyncio

        from tui.config import load_config

        os.environ.update(PENMAIL_CONFIG=str(config_file), PENMAIL_STATE_DIR=str(root / "state"))
        result.update(asyncio.run(scroll_run(load_config(), args.walk_rows)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"start-up, median of {args.runs} (signed in from a refresh token in the keyring, "
            f"mailbox of {args.messages}):"
        )
        print(f"  bare Textual app, one label   {result['bare_first_frame_ms']} ms")
        print(
            f"  penmail, first mailbox frame  {result['penmail_first_mailbox_frame_ms']} ms"
            f"   ratio {result['startup_ratio']}   (target <= 2)"
        )
        print(
            f"mailbox of {args.messages}: first page drawn {result['first_page_ms']} ms after sign-in"
            f"   (target <= 300 ms)"
        )
        print(
            f"  End: last row drawn in {result['end_ms']} ms, {result['end_requests']} list request(s)"
            f" (last row: {result['last_row']!r})"
        )
        print(
            f"  page-down through {result['walk_rows']} rows in {result['walk_s']} s, "
            f"{result['walk_requests']} list requests (at: {result['walk_row']!r})"
        )
        print(
            f"  memory over that walk {result['rss_start_mib']} -> {result['rss_end_mib']} MiB, growth "
            f"{result['rss_growth_mib']} MiB   (target < 50 MiB); pages kept: {result['pages_in_memory']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
