"""Line mode: `penmail drafts` lists, shows and deletes the drafts kept on this machine (by
the TUI, or by `send` and `reply` after a failure). No network, no Textual.

Only the configured account's drafts are shown (and those written before drafts had an
account); a draft of another account is "not found" here, as it would be in the TUI."""

from __future__ import annotations

from datetime import datetime

from tui.config import state_dir
from tui.line import EXIT_NOT_FOUND, EXIT_OK
from tui.line.run import LineError, Run, usage
from tui.safe_text import clean, one_line
from tui.text.format import list_date


def draft_store(run: Run):
    from tui.drafts import DraftStore

    return DraftStore(state_dir(run.env) / "drafts")


def account_of(run: Run) -> str | None:
    """The configured account's key (tui.drafts.account_key), which its drafts carry."""
    from tui.drafts import account_key

    config = run.config
    return account_key(config.server, config.email) if config.server and config.email else None


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (ValueError, AttributeError):
        return None


def draft_json(draft, *, full: bool = False) -> dict:
    doc = {"id": draft.id, "updated_at": draft.updated_at, "to": [clean(a, keep_newlines=False) for a in draft.to],
           "cc": [clean(a, keep_newlines=False) for a in draft.cc],
           "bcc": [clean(a, keep_newlines=False) for a in draft.bcc], "subject": one_line(draft.subject),
           "attachments": [clean(p, keep_newlines=False) for p in draft.attachments],
           "forwarded_attachments": len(draft.forward_attachment_ids), "in_reply_to": draft.in_reply_to,
           "forward_of": draft.forward_of}
    if full:
        doc.update(created_at=draft.created_at, body=clean(draft.body))
    return doc


def find_draft(run: Run, store, draft_id: str):
    draft = store.load(draft_id)
    account = account_of(run)
    if draft is None or (account is not None and not draft.belongs_to(account)):
        raise LineError(f"There is no draft {one_line(draft_id, 80)!r}; `penmail drafts` lists them.",
                        EXIT_NOT_FOUND, "not_found")
    return draft


async def cmd_drafts(run: Run) -> int:
    args, out = run.args, run.out
    action, ids = args.action or "list", args.ids
    if action == "list" and ids:
        raise usage("`penmail drafts` lists every draft; to see one, use `penmail drafts show ID`.")
    if action != "list" and not ids:
        raise usage(f"Name the draft: `penmail drafts {action} ID` (`penmail drafts` lists them).")
    store = draft_store(run)
    if action == "list":
        drafts = store.list(account_of(run))
        if out.json:
            out.emit({"count": len(drafts), "items": [draft_json(d) for d in drafts]})
            return EXIT_OK
        for d in drafts:
            people = ", ".join(one_line(a) for a in (*d.to, *d.cc, *d.bcc)) or "(no recipient)"
            files = "A" if d.attachments or d.forward_attachment_ids else "-"
            out.line("\t".join((d.id, list_date(_when(d.updated_at)), one_line(people, 60), files,
                                one_line(d.subject) or "(no subject)")))
        if not drafts and out.err_tty:
            out.note("There are no drafts.")
        return EXIT_OK
    drafts = [find_draft(run, store, draft_id) for draft_id in ids]  # all found before any is deleted
    if action == "show":
        if out.json:
            docs = [draft_json(d, full=True) for d in drafts]
            out.emit(docs[0] if len(docs) == 1 else {"items": docs})
            return EXIT_OK
        for n, d in enumerate(drafts):
            if n:
                out.line()
            for label, values in (("To", d.to), ("Cc", d.cc), ("Bcc", d.bcc)):
                if values:
                    out.line(f"{label + ':':<9}{', '.join(one_line(a) for a in values)}")
            out.line(f"{'Subject:':<9}{one_line(d.subject) or '(no subject)'}")
            out.line(f"{'Saved:':<9}{list_date(_when(d.updated_at))}")
            out.line(f"{'Draft:':<9}{d.id}")
            listed = [one_line(p) for p in d.attachments]
            if d.forward_attachment_ids:
                listed.append(f"{len(d.forward_attachment_ids)} attachment(s) of the forwarded message")
            if listed:
                out.line("Attachments:")
                for i, name in enumerate(listed, 1):
                    out.line(f"  {i}. {name}")
            out.line()
            out.lines(clean(d.body))
        return EXIT_OK
    for d in drafts:
        store.delete(d.id)
    if out.json:
        out.emit({"deleted": [d.id for d in drafts]})
    else:
        for d in drafts:
            out.line(f"Deleted draft {d.id} (\"{one_line(d.subject, 60) or '(no subject)'}\").")
    return EXIT_OK
