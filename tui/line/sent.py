"""Line mode: what a sender does after sending: revoke (withdraw a message from everyone or
from some recipients), expires (set, move or remove its end date) and audit (who read,
downloaded or replied to it, when, and how). No Textual here."""

from __future__ import annotations

from tui.line import EXIT_OK
from tui.line.output import audit_json, notification_json
from tui.line.run import Run, usage
from tui.safe_text import one_line
from tui.text.format import iso, withdrawn_sentence


def _recipients(values: list[str]) -> list[str] | None:
    """--recipient as e-mail addresses (None: everyone)."""
    from tui.compose import parse_address_list

    if not values:
        return None
    found, errors = parse_address_list(", ".join(values))
    if errors:
        raise usage(f"In --recipient: {errors[0]}")
    return list(dict.fromkeys(a.email for a in found))


async def cmd_revoke(run: Run) -> int:
    args, out = run.args, run.out
    recipients = _recipients(args.recipient)
    async with run.signed_in() as client:
        message = await client.revoke(args.id, recipients)
    if out.json:
        out.emit({"id": one_line(message.id), "subject": one_line(message.subject),
                  "recipients": None if recipients is None else [one_line(r) for r in recipients],
                  "notifications": [notification_json(n) for n in message.notifications]})
    else:
        out.line(withdrawn_sentence(message, recipients))
    return EXIT_OK


async def cmd_expires(run: Run) -> int:
    from tui.text.end_date import EndDateError, now_sentence, parse_end_date

    args, out = run.args, run.out
    try:
        when = parse_end_date(args.when)
    except EndDateError as exc:
        raise usage(str(exc)) from None
    async with run.signed_in() as client:
        message = await client.set_expiry(args.id, when)
    if out.json:
        out.emit({"id": one_line(message.id), "subject": one_line(message.subject),
                  "expires_at": iso(message.expires_at)})
    else:
        out.line(now_sentence(message.expires_at))
    return EXIT_OK


async def cmd_audit(run: Run) -> int:
    args, out = run.args, run.out
    async with run.signed_in() as client:
        rows = await client.audit(args.id)
    if out.json:
        out.emit({"message_id": one_line(args.id), "count": len(rows), "items": [audit_json(r) for r in rows]})
        return EXIT_OK
    for row in rows:
        out.line(("  " if out.out_tty else "\t").join(audit_fields(row)))
    if not rows and out.err_tty:
        out.note("Nothing has been done with this message yet.")
    return EXIT_OK


def audit_fields(row) -> tuple[str, ...]:
    """A row in words: time (local, to the second), who, what (with the attachment or the
    recipient it concerns), through what, from where."""
    when = row.at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if row.at else "-"
    what = one_line(row.action) or "-"
    if row.attachment_id:
        what += f" attachment {one_line(row.attachment_id)}"
    if row.recipient and row.recipient != row.actor:  # whom a notification, bounce or withdrawal concerns
        what += f" {one_line(row.recipient)}"
    return (when, one_line(row.actor or "") or "-", what, one_line(row.channel) or "-",
            one_line(row.client or "") or "-")
