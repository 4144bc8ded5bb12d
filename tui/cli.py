"""The `penmail` command: the TUI by default, `penmail demo` for a demo PEN with data, and
the line-mode commands (`penmail list`, `read`, `send`, ... see tui/line/) for scripts,
screen readers and keyboards alone."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from tui.config import ConfigError, load_config
from tui.config.environment import read_environment


def tune_interpreter() -> None:
    """The process-wide settings the full-screen client wants, set by the command that runs
    it (and by the benchmarks that time it), not by the app: an app in a test or another
    program leaves the interpreter as it found it."""
    # Worker threads (keyring, file writes, hashing) hand the GIL back to the UI, and get
    # it back after their I/O, every millisecond rather than every 5: a keyring read at
    # start-up took 30-90 ms behind the first screen's layout instead of 5 (bench/README.md).
    sys.setswitchinterval(0.001)


def run_tui(config, *, env=None, use_keyring: bool = True, sign_in_hint: str | None = None,
            demo_link: str | None = None, wait_for_server=None) -> int:
    import gc

    from tui.app import PenmailApp, check_key_ids
    from tui.terminal import keys as terminal_keys

    check_key_ids(config)
    terminal_keys.install()
    tune_interpreter()
    # What the imports made lives as long as the process: out of the collector's way, so
    # that collections while the first screen is laid out do not walk it (~10-20 ms).
    gc.freeze()
    app = PenmailApp(config, env=env, use_keyring=use_keyring, sign_in_hint=sign_in_hint, demo_link=demo_link,
                     wait_for_server=wait_for_server)
    app.run()
    return app.return_code or 0


def cmd_demo(args, env: Mapping[str, str] | None = None) -> int:
    import dataclasses
    import importlib
    import threading

    from tui.demo import guest_link_sentence, run_demo, sign_in_hint
    from tui.demo.prepared import adopt_drafts, cache_root, state_dir

    env = read_environment() if env is None else env
    config = load_config(env=env)
    if config.keys:  # a typo in [keys] is said before the demo PEN is made
        from tui.app import check_key_ids

        check_key_ids(config)
    # The client's modules load while the demo's server process starts (another core).
    threading.Thread(target=importlib.import_module, args=("tui.app",), name="penmail-warm", daemon=True).start()

    cache = None if args.fresh else cache_root()

    def launch(stack) -> int:
        # Signed in by password from the environment; the demo never touches the keyring.
        demo = dataclasses.replace(config, server=stack.server, email=stack.email, ca_file=stack.ca_file,
                                   password_command=None)
        # Its drafts and address book go with it: the demo's people must not turn up in the
        # completion of the person's own PEN, nor its drafts be offered there. With the
        # prepared data they outlive the run: a draft is there again at the next demo.
        state = state_dir(cache, stack.root)
        os.environ["PENMAIL_STATE_DIR"] = str(state)
        adopt_drafts(state, stack.server, stack.email)
        link = guest_link_sentence(stack)
        hint = sign_in_hint(stack.email, stack.password) + (" Ctrl+G shows a guest's link for a browser." if link
                                                             else "")
        return run_tui(demo, env={**env, "PENMAIL_STATE_DIR": str(state), "PENMAIL_PASSWORD": stack.password},
                       use_keyring=False, sign_in_hint=hint, demo_link=link, wait_for_server=stack.wait_ready)

    return run_demo(launch, cache_dir=cache)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one sentence on stderr, exit status 2 (argparse prints a usage block)."""

    def error(self, message: str):
        from tui.safe_text import one_line

        text = one_line(message).rstrip(".")
        self.exit(2, f"{self.prog}: {text[:1].upper()}{text[1:]}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    from tui.line import add_commands

    p = _Parser(prog="penmail", description="A terminal client for a Private Email Network. With no command, "
                                            "the full-screen client starts.")
    from tui import __version__

    p.add_argument("--version", action="version", version=f"penmail {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser("demo", help="start a demo PEN with believable data and open it")
    demo.add_argument("--fresh", action="store_true",
                      help="seed a new PEN instead of reusing the data prepared by an earlier demo")
    demo.set_defaults(func=cmd_demo)
    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv:
        from tui.line import protect_ids

        parser = build_parser()
        args = parser.parse_args(protect_ids(parser, argv))
    else:  # plain `penmail`, the full-screen client: no parser of every command (~5-7 ms of CPU)
        args = argparse.Namespace(command=None)
    env = read_environment()  # once, here; handed down from this point on
    if getattr(args, "line_command", None):
        return args.func(args, env)  # line mode: its own errors, exit codes and output
    try:
        if getattr(args, "func", None):
            return args.func(args, env)
        return run_tui(load_config(env=env), env=env)
    except ConfigError as exc:
        print(f"penmail: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
