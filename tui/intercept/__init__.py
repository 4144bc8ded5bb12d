"""`penmail intercept`: a PEN's notification e-mails in the person's own mailbox become the
real messages (what email2's Outlook toolbar did), over IMAP, in a Maildir, or one message
on standard input.  No Textual here.

* ``notice`` tells a notification of the configured PEN from any other mail: its
  ``X-PEN-Message`` header and the link in its text must both name the same message on the
  configured server; anything else is left alone.
* ``build`` fetches that message with the person's own sign-in and makes the real RFC 5322
  message with ``tui.export.build_email`` (the builder of ``penmail export``: the original
  Message-ID, threading headers, attachments as MIME parts), dated as the notification was.
  Attachments go in while their total stays within the limit (25 MiB by default); any
  other stays on the PEN, and the message names it with its size and link instead.
* ``maildir``, ``imap`` and ``stdin`` put the real message in the notification's place:
  written (appended) first, the notification removed only afterwards, and a copy already
  there from a run that was cut short is found first, so a run killed anywhere and run
  again ends with exactly one real message and no notification.

The package may import the client library (tui.export, tui.signin, tui.files, ...), never
the UI.
"""

from tui.intercept.build import Replacement, Unreadable, replacement
from tui.intercept.notice import Notice, recognise

__all__ = ["Notice", "Replacement", "Unreadable", "recognise", "replacement"]
