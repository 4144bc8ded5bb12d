"""`pen-server audit`: the audit trail printed (filtered by message, user and date; plain
lines or JSON), and `pen-server audit verify`, which walks the hash chain and exits 1 naming
the first row that does not hold (pen_server/audit.py)."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_audit(args) -> int:
    from pen_server import audit
    from pen_server.cli import CliError, _open
    from pen_server.errors import ApiError

    _settings, db = _open(args)
    try:
        with db.session() as session:
            if args.what == "verify":
                verdict = audit.verify(session)
                if verdict.broken is not None:
                    print(f"pen-server: The audit trail is broken at row {verdict.broken}: {verdict.why}.",
                          file=sys.stderr)
                    return 1
                print(f"The audit trail is whole: {verdict.rows} rows, each chained to the one before.")
                return 0
            try:
                since = audit.parse_since(args.since) if args.since else None
            except ApiError as exc:
                raise CliError(exc.message) from None
            rows = audit.all_rows(session, message_id=args.message, since=since,
                                  user=args.user.strip().lower() if args.user else None)
            for row in rows:
                out = audit.row_out(row)
                if args.json:
                    print(json.dumps(out, ensure_ascii=False, separators=(",", ":")))
                else:
                    print("\t".join([out["at"], out["action"], out["actor"] or "-", out["recipient"] or "-",
                                     out["channel"], out["client"] or "-", out["message_id"] or "-",
                                     out["attachment_id"] or "-", str(out["id"])]))
    finally:
        db.dispose()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="print the audit trail, or verify its hash chain")
    p.add_argument("what", nargs="?", choices=("verify",),
                   help="verify: check every row's hash and link; exit 1 naming the first broken row")
    p.add_argument("--data", required=True)
    p.add_argument("--message", metavar="ID",
                   help="only this message's rows (an id that begins with - as --message=ID)")
    p.add_argument("--user", metavar="EMAIL", help="only the rows this address acted in or is the recipient of")
    p.add_argument("--since", metavar="DATE", help="from this day (YYYY-MM-DD, UTC) or RFC 3339 time on")
    p.add_argument("--json", action="store_true", help="one JSON object a line (JSON Lines)")
    p.set_defaults(func=cmd_audit)
