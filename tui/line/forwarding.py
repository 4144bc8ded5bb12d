"""Line mode: forward, through a kept draft like send and reply. No Textual here.

The forwarded message's attachments go with it by their ids: the PEN shares the files of a
message the sender can read (nothing is downloaded or uploaded again)."""

from __future__ import annotations

from tui.line.drafts import account_of, draft_store
from tui.line.run import Run, usage
from tui.line.writing import _addresses, _check_files, _deliver, _keeping, _read_body


async def cmd_forward(run: Run) -> int:
    from tui.compose import format_address, forward_body, forward_subject
    from tui.drafts import Draft

    args = run.args
    to, cc, bcc = _addresses(args.to, "--to"), _addresses(args.cc, "--cc"), _addresses(args.bcc, "--bcc")
    if not to:
        raise usage("Name at least one recipient with --to.")
    files = _check_files(args.attach)
    store = draft_store(run)
    async with run.signed_in() as client:
        original = await client.get_message(args.id)
        own = _read_body(run)
        body = (own.rstrip("\n") + "\n\n" if own.strip() else "") + forward_body(original)
        draft = Draft(to=[format_address(a) for a in to], cc=[format_address(a) for a in cc],
                      bcc=[format_address(a) for a in bcc], subject=forward_subject(original.subject), body=body,
                      attachments=files, forward_of=original.id,
                      forward_attachment_ids=[a.id for a in original.attachments], account=account_of(run))
        store.save(draft)
        async with _keeping(draft):
            return await _deliver(run, client, store, draft)

