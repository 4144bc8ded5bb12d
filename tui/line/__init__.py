"""penmail's line mode: `penmail <command>` prints plain lines (or JSON with --json) and
exits, for scripts, screen readers and keyboards alone; no full-screen UI, no Textual.

This module only declares the commands and their arguments (argparse, cheap to import);
``tui.line.commands`` does the work and is imported when a command runs.

Exit codes: 0 done, 1 failed, 2 usage (also a bad settings file), 3 not signed in,
4 not found; 130 when stopped with Ctrl-C.  A failure is one sentence on stderr,
"penmail: ...".  Colour only on a terminal, never with NO_COLOR or TERM=dumb.

Plain output (stdout).  ``list``: one message a line, fields separated by a tab when
stdout is not a terminal (aligned columns on one): id, date ("YYYY-MM-DD HH:MM", local),
sender, two markers ("U" unread or "-", "A" attachments or "-"), subject (after "(withdrawn) "
or "(expired) " where the sender withdrew it or its end date passed).  ``status``:
recipient, kind, status, "N attempts", last error or "-", "opened YYYY-MM-DD HH:MM" or
"not opened".  ``revoke``: one sentence saying from whom it was withdrawn.  ``expires``:
one sentence saying until when the recipients can read it.  ``audit``: one
row a line: time ("YYYY-MM-DD HH:MM:SS", local), who, what ("read", "download attachment
ID", "revoke EMAIL", "notified EMAIL", ...), channel (api, web, intercept, smtp), client
address or "-".  ``read``: "Label:" headers (From, To, Cc, Bcc, Date, Expires when it has
an end date, Subject, Id), a numbered "Attachments:" list, a blank line, the
text.  ``get``: each saved path.  ``folders``: name, total, unread (tab-separated in a
pipe).  ``move``, ``mark``, ``delete``: one sentence a message done ("Moved ID to the
archive."), each failure as its own sentence on stderr.  ``list`` with more to come says
the command for the next page on stderr ("More: penmail list ... --cursor C").
Everything from the server is cleaned by tui.safe_text.

--json prints one JSON document on one line.  Shapes (Address = {"email", "name"|null};
times RFC 3339 UTC):

* whoami: {"server", "id", "email", "display_name", "role", "package"|null}
* login:  {"server", "email", "display_name", "role", "remembered": bool, "token_file"|null (the
  private file that keeps the sign-in where no keyring works), "notice"|null}
* logout: {"server", "email", "signed_out": bool}
* list:   {"folder", "total", "count", "next_cursor"|null, "items": [Summary]} where Summary is {"id",
  "thread_id", "folder", "from": Address, "to": [Address], "cc": [Address], "subject",
  "sent_at", "unread", "attachment_count", "size", "snippet", "expires_at"|null, "revoked_at"|null (a
  recipient's copy that its sender withdrew)}
* read, open: Summary + {"bcc": [Address], "in_reply_to"|null, "attachments":
  [{"number", "id", "filename", "content_type", "size", "sha256"}], "body" (the text as
  shown), "body_text", "has_html", "links": [url], "notifications": [Notification]}, with
  "unread" as it is after reading
* get:    {"message_id", "made_folder"|null (the -o folder, when it was made), "saved":
  [{"number", "attachment_id", "filename", "path", "size", "sha256", "already_saved": bool
  (a file with that name, or a numbered copy, already had this sha256: nothing written)}]}
* send, reply: {"id", "thread_id", "folder", "subject", "sent_at", "to", "cc", "bcc",
  "in_reply_to", "attachments", "notifications": [Notification], "expires_at"|null}
* drafts: {"count", "items": [Draft]} where Draft is {"id", "updated_at", "to": [str], "cc": [str],
  "bcc": [str] (as typed), "subject", "attachments": [path], "forwarded_attachments": int,
  "in_reply_to"|null, "forward_of"|null}; drafts show: Draft + {"created_at", "body"} (with
  several ids: {"items": [...]}); drafts delete: {"deleted": [id]}
* folders: {"items": [{"name", "total", "unread"}]}
* move, mark, delete: {"done": [{"id", "folder" (null once deleted for good), "unread", "subject"} +
  "deleted" for delete], "failed": [{"id", "code", "message", "exit_code"}]}; with one id
  that fails, the error document below instead
* forward: as send
* status: {"message_id", "items": [Notification]} where Notification is {"recipient":
  Address, "kind", "status", "attempts", "last_error"|null, "updated_at", "opened_at"|null (when
  that recipient first read it or downloaded a file of it), "revoked_at"|null}
* revoke: {"id", "subject", "recipients": [email]|null (null: everyone), "notifications": [Notification]}
* expires: {"id", "subject", "expires_at"|null}
* audit: {"message_id", "count", "items": [{"id", "at", "action", "actor"|null, "recipient"|null,
  "attachment_id"|null, "channel", "client"|null, "detail": {...}}]}, oldest first
* export: {"maildir", "count", "skipped", "migrated" (moved out of the old flat layout),
  "added": [{"id", "key", "folder", "subject", "flags", "attachments"}]}
* intercept: one object per line, {"event": "replaced"|"already"|"left"|"failed" (a notification)
  |"sent_placed"|"sent_already"|"sent_failed" (a message you sent, for the Sent folder), "folder",
  "id", "message_id", "subject", "attachments", "left_on_pen", "reason"} (what applies), then
  {"summary": {"replaced", "already", "left", "failed", "sent_placed", "sent_already", "sent_failed"}}
  (not with --watch or --stdin)
* any failure: {"error": {"code", "message", "exit_code"}} (and the sentence on stderr)

The package may import the client library and, only to hand over to the full-screen UI
(``penmail open``), ``tui.app`` deferred; nothing else of the UI (contracts in pyproject.toml).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_NOT_FOUND", "EXIT_NOT_SIGNED_IN", "EXIT_OK", "EXIT_USAGE",
           "add_commands", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_SIGNED_IN, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
FOLDERS = ("inbox", "sent", "archive", "trash")

COMMANDS = ("login", "logout", "whoami", "list", "read", "get", "send", "reply", "status", "open", "export",
            "intercept", "drafts", "folders", "move", "delete", "mark", "forward", "revoke", "expires",
            "audit")
MOVABLE = ("inbox", "archive", "trash")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def add_commands(sub) -> None:
    """Add the line-mode commands to `penmail`'s sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print one JSON document on standard output instead of lines")

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=description or help_text)
        p.set_defaults(func=run, line_command=name)
        return p

    for group in (_account_commands, _reading_commands, _writing_commands, _after_sending_commands,
                  _mail_store_commands):
        group(command)


Command = Callable[..., argparse.ArgumentParser]


def _account_commands(command: Command) -> None:
    """Signing in and out."""
    p = command("login", "sign in and remember the sign-in (the system keyring, else a private file)",
                "Sign in to the PEN. Asks for the server and e-mail address when they are not configured, "
                "and for the password on a terminal; reads the password from standard input otherwise.")
    p.add_argument("--server", help="the PEN's https:// address (saved in the settings file)")
    p.add_argument("--email", help="your e-mail address on the PEN (saved in the settings file)")
    p.add_argument("--ca-file", help="the PEN's CA certificate, for a PEN with a private CA (saved)")
    p.add_argument("--no-remember", action="store_true", help="do not keep the sign-in (keyring or file)")

    command("logout", "sign out: revoke the sign-in on the server and forget it here")
    command("whoami", "show who you are signed in as, and where")


def _reading_commands(command: Command) -> None:
    """Listing, reading, moving and saving messages."""
    p = command("list", "list messages, one a line: id, date, sender, U(nread) A(ttachment), subject")
    p.add_argument("--folder", choices=FOLDERS, default="inbox", help="the folder (default inbox)")
    p.add_argument("--unread", action="store_true", help="only unread messages")
    p.add_argument("--search", metavar="Q",
                   help="only messages that match Q, in the PEN's search language: words and \"phrases\" "
                        "(subject, sender, text), from:, to:, cc:, subject:, body:, has:attachment, is:unread, "
                        "is:read, before:/after:YYYY-MM-DD; all must match")
    p.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N messages (default 50)")
    p.add_argument("--cursor", metavar="C",
                   help="go on where a list stopped (the next cursor it gave; same --folder, --search, --unread)")

    command("folders", "list the folders: name, messages, unread")

    p = command("move", "move messages to another folder")
    p.add_argument("ids", nargs="+", metavar="ID", help="the message id (several may be given)")
    p.add_argument("folder", choices=MOVABLE, metavar="FOLDER", help="inbox, archive or trash")

    p = command("delete", "move messages to the trash (or, from the trash, delete them for good)")
    p.add_argument("ids", nargs="+", metavar="ID", help="the message id (several may be given)")
    p.add_argument("--for-good", action="store_true",
                   help="delete for good, with no way back; only messages already in the trash")

    p = command("mark", "mark messages read or unread")
    p.add_argument("ids", nargs="+", metavar="ID", help="the message id (several may be given)")
    p.add_argument("state", choices=("read", "unread"), metavar="read|unread", help="read or unread")
    p = command("read", "show a message's headers and text, and mark it read")
    p.add_argument("id", metavar="ID", help="the message id (from `penmail list`)")
    p.add_argument("--keep-unread", action="store_true", help="do not mark the message read")

    p = command("get", "save a message's attachments (resumed, checked, never overwriting)")
    p.add_argument("id", metavar="ID", help="the message id")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every attachment")
    which.add_argument("--attachment", type=_positive, metavar="N", help="attachment number N (from `read`)")
    p.add_argument("-o", "--output", metavar="DIR", help="the folder to save in (default: download_dir)")


def _writing_commands(command: Command) -> None:
    """Sending, replying, forwarding and drafts."""
    p = command("forward", "forward a message with its attachments; your text comes from standard input")
    p.add_argument("id", metavar="ID", help="the message to forward")
    p.add_argument("--to", action="append", default=[], metavar="A",
                   help="a recipient (repeat, or separate with commas)")
    p.add_argument("--cc", action="append", default=[], metavar="A", help="a copy recipient")
    p.add_argument("--bcc", action="append", default=[], metavar="A", help="a hidden recipient")
    p.add_argument("--attach", action="append", default=[], metavar="FILE", help="attach a file of yours as well")

    p = command("send", "send a message; the text comes from standard input")
    p.add_argument("--to", action="append", default=[], metavar="A",
                   help="a recipient (repeat, or separate with commas)")
    p.add_argument("--cc", action="append", default=[], metavar="A", help="a copy recipient")
    p.add_argument("--bcc", action="append", default=[], metavar="A", help="a hidden recipient")
    p.add_argument("--subject", help="the subject")
    p.add_argument("--attach", action="append", default=[], metavar="FILE", help="attach a file (repeat for more)")
    p.add_argument("--expires", metavar="WHEN",
                   help="an end date, after which the recipients can no longer read it: a length of time "
                        "(7d, 12h, 2w) or a date (2026-12-01: through that day; 2026-12-01 17:00)")
    p.add_argument("--draft", metavar="DRAFT", help="send again a draft kept after a failure (no other options)")
    p.add_argument("--allow-empty", action="store_true",
                   help="send even when standard input has no text (refused otherwise)")

    p = command("drafts", "list, show or delete the drafts kept on this machine",
                "Without an action, list the drafts (newest first); `show ID...` prints them, `delete ID...` "
                "removes them.")
    p.set_defaults(ids=[])
    actions = p.add_subparsers(dest="action", metavar="{show,delete}")
    for name, text in (("show", "print drafts: headers, files and text"), ("delete", "remove drafts for good")):
        a = actions.add_parser(name, help=text, description=text)
        # --json before or after the action; SUPPRESS keeps one given before it.
        a.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print one JSON document on standard output instead of lines")
        a.add_argument("ids", nargs="*", metavar="ID", help="a draft's id, as `penmail drafts` lists it")

    p = command("reply", "reply to a message; your text comes from standard input, the original is quoted")
    p.add_argument("id", metavar="ID", help="the message to reply to")
    p.add_argument("--all", action="store_true", help="reply to everyone on the message (never to yourself)")
    p.add_argument("--attach", action="append", default=[], metavar="FILE", help="attach a file (repeat for more)")


def _after_sending_commands(command: Command) -> None:
    """What happened to a message you sent, and withdrawing it."""
    p = command("status", "show each recipient's notification status, and when each opened it, for a message "
                          "you sent")
    p.add_argument("id", metavar="ID", help="the message id (from `penmail list --folder sent`)")

    p = command("revoke", "withdraw a message you sent: from everyone, or from the recipients named",
                "Withdraw a message you sent. Those you withdraw it from can no longer open it or its files, and "
                "notifications not yet sent to them are cancelled; you and the others keep your copies.")
    p.add_argument("id", metavar="ID", help="the message id (from `penmail list --folder sent`)")
    p.add_argument("--recipient", action="append", default=[], metavar="EMAIL",
                   help="withdraw it from this recipient only (repeat for more; default: everyone)")

    p = command("expires", "set, move or remove the end date of a message you sent",
                "Set, move or remove the end date of a message you sent: after it, the recipients can no longer "
                "read it or its files; you keep your copy.")
    p.add_argument("id", metavar="ID", help="the message id (from `penmail list --folder sent`)")
    p.add_argument("when", metavar="WHEN",
                   help="the new end date: a length of time from now (7d, 12h, 2w), a day (2026-12-01: readable "
                        "through that day) or a day and time (2026-12-01 17:00); none removes it")

    p = command("audit", "show the audit trail of a message you sent: who read, downloaded or replied, when, "
                         "and how")
    p.add_argument("id", metavar="ID", help="the message id (from `penmail list --folder sent`)")


def _mail_store_commands(command: Command) -> None:
    """Notification links, and the PEN's messages in your own mail store."""
    p = command("open", "open the message of a notification e-mail's link (signing up as a guest if new)")
    p.add_argument("url", metavar="URL", help="the link: https://<pen>/m/<message id>?t=<token>")
    p.add_argument("--print", action="store_true", help="print the message as `read` does instead of the TUI")
    p.add_argument("--keep-unread", action="store_true", help="with --print: do not mark the message read")

    p = command("export", "write messages with their attachments into a Maildir++ tree, once each")
    p.add_argument("--maildir", required=True, metavar="DIR",
                   help="the Maildir++ tree: the inbox at its root, .Sent, .Archive, .Trash (made when missing)")
    p.add_argument("--folder", action="append", choices=FOLDERS, metavar="F",
                   help="a folder to export (repeat for more; default inbox, archive and sent)")
    p.add_argument("--since", metavar="DATE", help="only messages sent on or after DATE (2026-11-27)")

    p = command("intercept", "replace the PEN's notification e-mails in your mailbox with the real messages, "
                             "and put the messages you send in your Sent folder",
                "Find the PEN's notification e-mails in your own mailbox and put the real messages, with their "
                "attachments, in their place (over IMAP with the [imap] settings, in a Maildir, or one message "
                "from standard input to standard output); and put each PEN message you send, once, in your "
                "Sent folder (over IMAP the folder marked \\Sent or [imap] sent_folder; with --maildir DIR, "
                "DIR/.Sent or [intercept] sent_maildir). [intercept] sent = false turns that off.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--imap", action="store_true",
                       help="the folders of [imap] in the settings file, and your Sent folder there")
    where.add_argument("--maildir", metavar="DIR",
                       help="a local Maildir (mbsync, notmuch); sent messages go to DIR/.Sent")
    where.add_argument("--stdin", action="store_true",
                       help="one message on standard input; its replacement (or itself) on standard output")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="with --imap: replace what is there and stop (default)")
    when.add_argument("--watch", action="store_true",
                      help="with --imap: stay connected (IDLE) and replace each new notification as it comes, and "
                           "place each message you send within seconds")


ID_COMMANDS = ("read", "get", "reply", "status", "move", "delete", "mark", "forward", "revoke", "expires",
               "audit")
_DASH_ID = re.compile(r"^-{1,2}[A-Za-z0-9_-]{14,200}$")


def protect_ids(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Message ids are URL-safe base64, so one in 64 starts with "-", which argparse would
    take for an option.  For the commands that take IDs, the first word after the command
    that is not one of its options, and any later word that looks like an id and is not an
    option, is an id: then the options go first and every positional word, in its order,
    behind "--", where argparse takes it as it is."""
    if len(argv) < 2 or argv[0] not in ID_COMMANDS or "--" in argv:
        return argv
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = sub.choices.get(argv[0]) if sub is not None else None
    if command is None:
        return argv
    options = command._option_string_actions
    kept, positionals, dashed, expect_value = [], [], False, False
    for n, word in enumerate(argv[1:]):
        if expect_value:
            kept.append(word)
            expect_value = False
            continue
        name = word.split("=", 1)[0]
        if name in options:
            kept.append(word)
            expect_value = "=" not in word and options[name].nargs is None and options[name].const is None \
                and not isinstance(options[name], (argparse._StoreTrueAction, argparse._HelpAction))
            continue
        if word.startswith("-") and (n == 0 or _DASH_ID.match(word)):
            positionals.append(word)
            dashed = True
            continue
        (kept if word.startswith("-") else positionals).append(word)
    return [argv[0], *kept, "--", *positionals] if dashed else argv


def run(args: argparse.Namespace, env=None) -> int:
    """A line-mode command, with the environment tui.cli.main read (a Mapping; None: os.environ)."""
    from tui.line.commands import main

    return main(args, env=env)
