"""The line-mode commands: sign-in, list, read, get, send, reply, forward, status, open, export,
folders, move, delete, mark, revoke, audit.

Each command is a coroutine taking a ``Run`` (the parsed arguments, the output, the
settings) and returning an exit code.  ``main`` runs one, and turns every failure into
one sentence on stderr (and ``{"error": ...}`` on stdout with --json) and an exit code:
0 done, 1 failed, 2 usage, 3 not signed in, 4 not found.  Never a traceback (unless
``PENMAIL_DEBUG`` is set).

Sign-in is the TUI's: the refresh token in the keyring (``tui.signin.session.Session``), then
``password_command``, then ``PENMAIL_PASSWORD``; nothing asks for a password except
``login`` and ``open``.  Refresh tokens rotate on every use and presenting a used one
revokes the whole sign-in, so two line commands at once take turns (a lock file in the
state folder) while one refreshes and stores the token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from tui.config import ConfigError, load_config
from tui.line import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
)
from tui.line.output import (
    Output,
)
from tui.safe_text import one_line

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["LineError", "Run", "main", "parse_link", "update_settings"]
from tui.line.account import (
    cmd_login,
    cmd_logout,
    cmd_open,
    cmd_whoami,
    parse_link,  # noqa: E402
)
from tui.line.drafts import cmd_drafts
from tui.line.forwarding import cmd_forward
from tui.line.intercept import cmd_intercept
from tui.line.manage import cmd_delete, cmd_folders, cmd_mark, cmd_move
from tui.line.reading import cmd_export, cmd_get, cmd_list, cmd_read, cmd_status
from tui.line.run import LineError, Run, _exit_code, _sentence, update_settings  # noqa: E402
from tui.line.sent import cmd_audit, cmd_expires, cmd_revoke
from tui.line.writing import cmd_reply, cmd_send

# ---------------------------------------------------------------- running a command


HANDLERS = {
    "login": cmd_login, "logout": cmd_logout, "whoami": cmd_whoami, "list": cmd_list, "read": cmd_read,
    "get": cmd_get, "send": cmd_send, "reply": cmd_reply, "status": cmd_status, "open": cmd_open,
    "export": cmd_export, "intercept": cmd_intercept, "drafts": cmd_drafts,
    "folders": cmd_folders, "move": cmd_move, "delete": cmd_delete, "mark": cmd_mark, "forward": cmd_forward,
    "revoke": cmd_revoke, "expires": cmd_expires, "audit": cmd_audit,
}



def _fail(out: Output, message: str, exit_code: int, code: str) -> int:
    sentence = _sentence(message)
    out.error(sentence)
    if out.json:
        try:
            out.emit({"error": {"code": one_line(code) or "failed", "message": sentence, "exit_code": exit_code}})
        except (OSError, ValueError):
            pass
    return exit_code


def main(args: argparse.Namespace, *, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    out = Output(json_mode=getattr(args, "json", False), env=env)
    piped = args.line_command == "intercept" and getattr(args, "stdin", False)
    if piped:
        out.out = out.err  # `intercept --stdin`: standard output is the message, lines go to stderr
    code = EXIT_FAILED
    try:
        try:
            # `login --server/--ca-file` replaces a ca_file whose folder is gone (a restarted demo)
            replaces = args.line_command == "login" and bool(args.server or args.ca_file)
            config = load_config(env=env, stale_ca_file_ok=replaces)
            run = Run(args, out, env, config)
            result: Any = asyncio.run(HANDLERS[args.line_command](run))
            code = result() if callable(result) else result
        except LineError as exc:
            code = _fail(out, exc.message, exc.exit_code, exc.code)
        except ConfigError as exc:
            if piped:  # a broken settings file loses no mail: it goes through unchanged
                from tui.line.intercept import pass_through

                pass_through()
            code = _fail(out, str(exc), EXIT_USAGE, "config")
        except KeyboardInterrupt:
            extra = " what arrived so far is kept, and `penmail get` again goes on from there." \
                if args.line_command == "get" else ""
            out.end_progress()
            if sys.stdin is not None and sys.stdin.isatty():
                out.err.write("\n")  # the terminal echoed ^C after a prompt: a line of its own
            out.note("Stopped;" + extra if extra else "Stopped.")
            code = 130
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
            from tui.pen_client import PenError

            if isinstance(exc, PenError):
                code = _fail(out, exc.message, _exit_code(exc), exc.code)
            elif isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                where = f" ({exc.filename})" if exc.filename else ""
                code = _fail(out, f"A file could not be used{where}: {exc.strerror or type(exc).__name__}",
                             EXIT_FAILED, "os_error")
            elif isinstance(exc, BrokenPipeError):
                raise
            else:
                if env.get("PENMAIL_DEBUG"):
                    traceback.print_exc()
                code = _fail(out, f"Something went wrong ({type(exc).__name__}: {one_line(str(exc), 200)}); "
                                  f"this is a fault in penmail", EXIT_FAILED, "internal")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`penmail list | head`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    return code
