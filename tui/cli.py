"""The `penmail` command: the TUI by default, `penmail demo` for a demo PEN with data."""

from __future__ import annotations

import argparse
import os
import sys

from tui.config import ConfigError, load_config


def run_tui(config, *, env=None, use_keyring: bool = True) -> int:
    from tui.app import PenmailApp

    app = PenmailApp(config, env=env, use_keyring=use_keyring)
    app.run()
    return app.return_code or 0


def cmd_demo(_args) -> int:
    import dataclasses

    from tui.demo import run_demo

    config = load_config()

    def launch(stack) -> int:
        # Signed in by password from the environment; the demo never touches the keyring.
        demo = dataclasses.replace(config, server=stack.server, email=stack.email, ca_file=stack.ca_file,
                                   password_command=None)
        return run_tui(demo, env={**os.environ, "PENMAIL_PASSWORD": stack.password}, use_keyring=False)

    return run_demo(launch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="penmail", description="A terminal client for a Private Email Network.")
    sub = p.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="start a demo PEN with believable data and open it")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "func", None):
            return args.func(args)
        return run_tui(load_config())
    except ConfigError as exc:
        print(f"penmail: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
