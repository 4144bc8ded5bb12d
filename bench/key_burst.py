"""How long penmail takes to take keys that come in one burst (a paste without bracketed
paste, a macro, SSH), with the key gate (tui/terminal/key_gate.py) and without it. No PEN: the
sign-in screen, whose fields take text and whose Tab moves the focus.

    /work/venv/bin/python bench/key_burst.py            # 1000 characters, 200 Tabs, 3 rounds
    /work/venv/bin/python bench/key_burst.py --chars 300 --tabs 60 --rounds 1

Printed per case: seconds from the burst to the last key taken, best of the rounds.
Characters typed into a field go straight through the gate; each Tab waits for the one
before it (it moves the focus), which is what costs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tui_helpers import burst  # noqa: E402
from tui.app import PenmailApp  # noqa: E402
from tui.cli import tune_interpreter  # noqa: E402
from tui.config import Config  # noqa: E402
from tui.terminal.key_gate import KeyGate  # noqa: E402


async def one(text: str, done, gate: bool) -> float | None:
    takes = KeyGate.takes
    if not gate:
        KeyGate.takes = staticmethod(lambda event: False)  # type: ignore[method-assign]
    try:
        tune_interpreter()  # as `penmail` does before its app starts (tui/cli.py)
        app = PenmailApp(Config(server="https://127.0.0.1:9", email="a@b.example"), env={}, use_keyring=False)
        async with app.run_test(size=(100, 30)) as pilot:
            while not (app.focused is not None and app.focused.id == "password"):
                await pilot.pause(0.05)
            if "<tab>" in text:  # whole rounds of the focus chain: back in the password field
                ring = len(app.screen.focus_chain)
                text = "<tab>" * (ring * max(1, text.count("<tab>") // ring)) + "x"
            field = app.focused
            start = time.perf_counter()
            burst(app, text)
            while not done(field):
                await asyncio.sleep(0.001)
                if time.perf_counter() - start > 60:
                    return None  # a key went elsewhere
            return time.perf_counter() - start
    finally:
        KeyGate.takes = takes  # type: ignore[method-assign]


def run_one(keys: str, done, gate: bool) -> float | None:
    try:
        return asyncio.run(one(keys, done, gate))
    except Exception as exc:  # without the gate the keys can end the app itself
        print(f"  ({type(exc).__name__}: {exc})")
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chars", type=int, default=1000)
    p.add_argument("--tabs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    os.environ["PENMAIL_STATE_DIR"] = tempfile.mkdtemp(prefix="penmail-bench-")
    text = ("abcdefghij" * (args.chars // 10 + 1))[: args.chars]
    cases = {
        f"{args.chars} characters into a field": (text, lambda field: field.value == text),
        # Round the sign-in screen's fields back to the password field, then x into it.
        f"about {args.tabs} Tabs, then x": ("<tab>" * args.tabs, lambda field: field.value == "x"),
    }
    for name, (keys, done) in cases.items():
        for gate in (True, False):
            times = [run_one(keys, done, gate) for _ in range(args.rounds)]
            taken = [t for t in times if t is not None]
            result = f"{min(taken):6.2f} s" if taken else "  x never reached the field: keys went elsewhere"
            print(f"{name:32} {'gate' if gate else 'no gate':8} {result}")


if __name__ == "__main__":
    main()
