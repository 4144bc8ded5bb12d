"""`penmail intercept`: notification e-mails become the real messages, and the messages
the person sent are placed in their Sent folder (tui.intercept).

Output: one line per notification handled ("Replaced", "Already there", "Left",
"Failed") and per sent message placed ("Placed in Sent", "Already in Sent", "Failed for
Sent"), and with --once or --maildir a summary of both halves; --json gives one JSON
object per line instead (``{"event": "replaced"|"already"|"left"|"failed"|"sent_placed"|
"sent_already"|"sent_failed", "folder", "id", ...}``, then ``{"summary": {...}}``).  With
--stdin (no sent half there), standard output is the message, so the lines go to standard
error.  Exit codes: 0 done (a notification the person cannot read is left in place and is
not a failure), 1 a message or the run failed, 2 usage or settings, 3 not signed in (to
the PEN or the IMAP server).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections import Counter
from pathlib import Path

from tui.line import EXIT_FAILED, EXIT_NOT_SIGNED_IN, EXIT_OK, EXIT_USAGE
from tui.line.run import LineError, Run
from tui.safe_text import one_line

INTERCEPT = "intercept"  # the channel the PEN's audit trail records these reads under

_WORDS = {"replaced": "Replaced", "already": "Already there, notification removed", "left": "Left in place",
          "failed": "Failed", "sent_placed": "Placed", "sent_already": "Already", "sent_failed": "Failed for"}
_KINDS = ("replaced", "already", "left", "failed", "sent_placed", "sent_already", "sent_failed")


def _report(run: Run, outcome, counts: Counter) -> None:
    counts[outcome.kind] += 1
    out = run.out
    if out.json:
        out.emit(outcome.to_json())
        out.flush()
        return
    folder = one_line(outcome.folder, 200)
    where = f"{folder}:" if outcome.kind == "sent_failed" else f"in {folder}:"
    if outcome.replacement is not None:
        made = outcome.replacement
        extra = f", {made.attachments} attachment{'s' if made.attachments != 1 else ''}" if made.attachments else ""
        extra += f", {made.left_on_pen} left on the PEN (too large)" if made.left_on_pen else ""
        out.line(f"{_WORDS[outcome.kind]} {where} \"{one_line(made.subject, 80)}\" "
                 f"({one_line(made.pen_id, 200)}{extra})")
    else:
        why = f": {one_line(outcome.reason, 200)}" if outcome.reason else ""
        if outcome.kind == "sent_already":
            why = " (a copy from a run cut short, now recorded)"
        out.line(f"{_WORDS[outcome.kind]} {where} message {one_line(outcome.pen_id or '?', 200)}{why}")
    out.flush()


def _summary(run: Run, counts: Counter, sent: bool) -> int:
    doc = {k: counts.get(k, 0) for k in _KINDS}
    if run.out.json:
        run.out.emit({"summary": doc})
    else:
        text = (f"{doc['replaced']} replaced, {doc['already']} already there, {doc['left']} left in place "
                f"(not readable with your sign-in), {doc['failed']} failed")
        if sent:
            text += (f"; sent messages: {doc['sent_placed']} placed, {doc['sent_already']} already there, "
                     f"{doc['sent_failed']} failed")
        run.out.line(text + ".")
    return EXIT_FAILED if doc["failed"] or doc["sent_failed"] else EXIT_OK


def _limit(run: Run) -> int:
    from tui.intercept.settings import intercept_settings

    return intercept_settings(run.config).attachment_limit


def _sent_plan(run: Run, client, server: str, limit: int, scratch: Path | None = None):
    """The sent half's plan, or None when [intercept] sent = false."""
    from tui.config import state_dir
    from tui.intercept.sent import SentPlan
    from tui.intercept.settings import intercept_settings

    settings = intercept_settings(run.config)
    if not settings.sent:
        return None
    me = (getattr(getattr(client, "user", None), "email", "") or run.config.email or "")
    return SentPlan(state_dir(run.env) / "intercept", server, me, settings.sent_since, limit, run.out.note,
                    scratch=scratch)


def _server(run: Run) -> str:
    problem = run.config.not_set_up()
    if problem:
        raise LineError(problem, EXIT_NOT_SIGNED_IN, "not_configured")
    return run.config.server


async def cmd_intercept(run: Run) -> int:
    from tui.export import ExportError
    from tui.intercept.settings import intercept_settings

    args = run.args
    if args.watch and not args.imap:
        raise LineError("--watch works with --imap only.", EXIT_USAGE, "usage")
    if args.stdin:
        return await _stdin(run)
    try:
        limit = _limit(run)
        server = _server(run)
        intercept_settings(run.config)  # a wrong [intercept] key is said before anything is done
        if args.maildir:
            return await _maildir(run, server, limit)
        return await _imap(run, server, limit)
    except ExportError as exc:
        raise LineError(exc.message, EXIT_FAILED, exc.code) from None


def pass_through() -> None:
    """Standard input to standard output, unchanged, in pieces."""
    while chunk := sys.stdin.buffer.read(1 << 20):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


async def _stdin(run: Run) -> int:
    from tui.config import ConfigError
    from tui.export import ExportError
    from tui.intercept.local import intercept_stream

    try:
        limit, server = _limit(run), _server(run)
    except (LineError, ConfigError):
        pass_through()  # not set up: the message still goes through, unchanged, and the failure is said
        raise
    try:
        outcome = await intercept_stream(functools.partial(run.signed_in, channel=INTERCEPT), server, limit=limit,
                                         source=sys.stdin.buffer,
                                         sink=sys.stdout.buffer)
    except ExportError as exc:
        raise LineError(exc.message, EXIT_FAILED, exc.code) from None
    if outcome is not None:
        _report(run, outcome, Counter())
    return EXIT_OK


async def _maildir(run: Run, server: str, limit: int) -> int:
    from tui.export import _host
    from tui.intercept.local import intercept_maildir
    from tui.intercept.sent import MaildirSent, SentBusy
    from tui.intercept.settings import intercept_settings

    counts: Counter = Counter()
    root = Path(run.args.maildir).expanduser().absolute()
    async with run.signed_in(channel=INTERCEPT) as client:
        async for outcome in intercept_maildir(client, root, server, limit=limit):
            _report(run, outcome, counts)
        plan = _sent_plan(run, client, server, limit)
        if plan is not None:
            named = intercept_settings(run.config).sent_maildir
            try:
                box = await asyncio.to_thread(MaildirSent, named or root / ".Sent", _host(server),
                                              None if named else ".Sent")
            except OSError as exc:
                raise LineError(f"The Maildir for sent messages {named or root / '.Sent'} cannot be made "
                                f"({exc.strerror or type(exc).__name__}).", EXIT_FAILED, "sent_maildir") from None
            plan.scratch = box.path / "tmp"
            try:
                async for outcome in plan.place(box, client):
                    _report(run, outcome, counts)
            except SentBusy as exc:
                run.out.note(exc.message)
    return _summary(run, counts, plan is not None)


async def _imap(run: Run, server: str, limit: int) -> int:
    from tui.intercept import imap
    from tui.intercept.sent import SentBusy
    from tui.intercept.settings import imap_password, imap_settings
    from tui.signin.credentials import CredentialError

    settings = imap_settings(run.config)
    try:
        password = await asyncio.to_thread(imap_password, settings, run.env)
    except CredentialError as exc:
        raise LineError(f"The IMAP password could not be read: {exc}", EXIT_NOT_SIGNED_IN, "password_command") from None
    if not password:
        raise LineError(f"No IMAP password for {settings.user} on {settings.host}; set imap.password_command, keep "
                        f"it in the keyring (service \"penmail-imap\"), or set PENMAIL_IMAP_PASSWORD.",
                        EXIT_NOT_SIGNED_IN, "imap_password")
    counts: Counter = Counter()
    plan = None
    try:
        async with run.signed_in(channel=INTERCEPT) as client:
            plan = _sent_plan(run, client, server, limit)
            if run.args.watch:
                also = " and the messages you send (for your Sent folder)" if plan is not None else ""
                run.out.note(f"Watching {', '.join(one_line(f, 60) for f in settings.folders)} on {settings.host}"
                             f"{also}; stop with Ctrl-C.")
                await imap.watch(settings, password, client, server, limit=limit,
                                 report=lambda o: _report(run, o, counts), note=run.out.note, sent=plan)
                return EXIT_OK  # pragma: no cover - watch runs until stopped
            try:
                async for outcome in imap.once(settings, password, client, server, limit=limit, sent=plan):
                    _report(run, outcome, counts)
            except SentBusy as exc:  # the sent half comes last: the received half is done
                run.out.note(exc.message)
    except imap.ImapFailure as exc:
        code = EXIT_NOT_SIGNED_IN if exc.code == "imap_login" else EXIT_FAILED
        raise LineError(exc.message, code, exc.code) from None
    except OSError as exc:
        raise LineError(f"The connection to the IMAP server {settings.host} was lost ({type(exc).__name__}); run "
                        f"the command again.", EXIT_FAILED, "imap_connection") from None
    except Exception as exc:
        from imapclient.exceptions import IMAPClientError

        if not isinstance(exc, IMAPClientError):
            raise
        raise LineError(f"The IMAP server {settings.host} refused a command ({one_line(str(exc), 200)}); check "
                        f"[imap] folders and sent_folder.", EXIT_FAILED, "imap_refused") from None
    return _summary(run, counts, plan is not None)
