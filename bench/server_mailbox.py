"""pen-server benchmarks for issue 2, in one run:

1. GET /messages, first page, over a mailbox of 100,000 messages on loopback TLS:
   the median over many requests, and the 2,000th page (keyset paging) against the first;
   then a few searches in the search language (q) over the whole folder.
2. One message to 1,000 recipients: time until a local aiosmtpd has accepted all 1,000
   notifications, and over how many SMTP connections.

The 100,000 messages are written straight into the database (bulk INSERTs through the
server's own models): sending them one by one through the API would take an hour and
measure nothing this benchmark is about. Everything else goes over HTTPS.

    /work/venv/bin/python bench/server_mailbox.py [--messages 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402

PASSWORD = "bench password 1"


def seed(data: Path, count: int, thread_size: int = 1) -> None:
    """`count` messages from sender to reader, one a second; each run of `thread_size`
    messages is one thread (its first message's id), as replies would make it."""
    from sqlalchemy import insert, select

    from pen_server import search_index
    from pen_server.db import Database
    from pen_server.models import FolderCount, MailboxEntry, Message, User, new_id, utcnow
    from pen_server.settings import load_settings

    db = Database(load_settings(data).database_url)
    with db.session() as s:
        reader = s.scalar(select(User).where(User.email == "reader@bench.example"))
        sender = s.scalar(select(User).where(User.email == "sender@bench.example"))
    start = utcnow() - timedelta(seconds=count)
    batch = 5000
    for first in range(0, count, batch):
        messages, entries = [], []
        for i in range(first, min(first + batch, count)):
            mid = new_id()
            if i % thread_size == 0:
                thread = mid
            when = start + timedelta(seconds=i)
            messages.append(dict(id=mid, thread_id=thread, sender_id=sender.id, from_email=sender.email,
                                 from_name="Sender", to_list=[{"email": reader.email, "name": None}], cc_list=[],
                                 bcc_list=[], subject=f"Message number {i}", body_text=f"Body of message {i}.",
                                 body_html=None, snippet=f"Body of message {i}.", size=40, in_reply_to=None,
                                 sent_at=when, attachment_count=int(i % 1000 == 0)))
            entries.append(dict(user_id=reader.id, message_id=mid, folder="inbox", unread=i % 3 == 0,
                                is_sender=False, sent_at=when, thread_id=thread))
        with db.engine.begin() as conn:
            conn.execute(insert(Message), messages)
            conn.execute(insert(MailboxEntry), entries)
            # The search index, as sending writes it (every 1,000th message "has" an attachment).
            search_index.add(conn, [search_index.document(m, [reader.id]) for m in messages])
    with db.engine.begin() as conn:  # what the server keeps with every change
        conn.execute(insert(FolderCount), [dict(user_id=reader.id, folder="inbox", total=count)])
        if conn.dialect.name == "sqlite":  # as migration 0010 leaves an index it built
            conn.exec_driver_sql("INSERT INTO message_search (message_search) VALUES ('optimize')")
    db.dispose()


def make_bench_pen(data: Path, messages: int, thread_size: int = 1, database_url: str = "") -> int:
    """A PEN in `data` with a reader holding `messages` messages (in threads of `thread_size`)
    and a sender; its port. `database_url`: an empty PostgreSQL database instead of SQLite
    (bench/pg_paging.py)."""
    port = free_port()
    init_pen(data, port=port, database_url=database_url)
    add_user(data, "reader@bench.example", "Reader", PASSWORD)
    add_user(data, "sender@bench.example", "Sender", PASSWORD)
    seed(data, messages, thread_size)
    return port


def search_kinds(day: str) -> dict[str, str]:
    """The searches timed, one of each kind (`day`: a day of the seeded messages)."""
    return {"phrase (as before)": "number 99999", "from: has:attachment": "from:sender has:attachment",
            "to: (JSON list)": "to:reader", "is:unread": "is:unread", "after:": f"after:{day}",
            "words and subject:": '"message" subject:number body:99'}


def index_sizes(database_url: str) -> dict[str, float]:
    """The search index's size and the whole database's, in MB."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                index = conn.scalar(text("SELECT pg_total_relation_size('message_search') "
                                         "+ pg_total_relation_size('search_words')"))
                whole = conn.scalar(text("SELECT pg_database_size(current_database())"))
            else:
                index = conn.scalar(text("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'message_search%' "
                                         "OR name LIKE 'search_keys%' OR name LIKE 'sqlite_autoindex_search_keys%' "
                                         "OR name = 'search_words'"))
                whole = conn.scalar(text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"))
    finally:
        engine.dispose()
    return {"index_mb": round(index / 1e6, 1), "database_mb": round(whole / 1e6, 1)}


def timed_get(c: httpx.Client, params: dict) -> tuple[float, dict]:
    t = time.perf_counter()
    r = c.get("/messages", params=params)
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    return elapsed, r.json()


def _searches_only(root: Path, port: int, sink, messages: int) -> dict:
    """Each search kind 20 times in turns (so that other load falls on all alike), and GET
    /folders; medians in ms, with what each found."""
    out: dict = {}
    process = PenProcess(root, port, smtp_port=sink.port, env={"PEN_SEND_MESSAGES_PER_HOUR": str(messages + 10)})
    process.start()
    try:
        with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60) as c:
            tok = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
            c.headers["Authorization"] = f"Bearer {tok['access_token']}"
            _e, first = timed_get(c, {"limit": 50})
            day = first["items"][-1]["sent_at"][:10]
            # The folder's first page without a search, in the same turns: what the machine gives
            # any request at that moment (on a loaded machine, all of them are slower alike).
            kinds: dict[str, str | None] = {"(no search: first page)": None, **search_kinds(day)}
            times: dict[str, list[float]] = {name: [] for name in kinds}
            found: dict[str, str] = {}
            for name, q in kinds.items():  # warm up
                _e, body = timed_get(c, {"limit": 50, **({"q": q} if q else {})})
                found[name] = f"{body['total']}{'' if body.get('total_exact', True) else '+'}"
            for _ in range(20):
                for name, q in kinds.items():
                    times[name].append(timed_get(c, {"limit": 50, **({"q": q} if q else {})})[0])
            folder_times = []
            for _ in range(20):
                t = time.perf_counter()
                c.get("/folders").raise_for_status()
                folder_times.append(time.perf_counter() - t)
            out["first_page_total"] = first["total"]
            out["search_median_ms"] = {n: round(statistics.median(v) * 1000, 1) for n, v in times.items()}
            out["search_p90_ms"] = {n: round(sorted(v)[int(len(v) * 0.9)] * 1000, 1) for n, v in times.items()}
            out["search_found"] = found
            out["folders_median_ms"] = round(statistics.median(folder_times) * 1000, 1)
    finally:
        process.stop()
    return out


def _print_searches(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out, indent=2))
        return
    print(f"mailbox of {out['first_page_total']} messages (seeded in {out['seed_seconds']} s); database "
          f"{out['database_mb']} MB, of which the search index {out['index_mb']} MB")
    for name, ms in out["search_median_ms"].items():
        print(f"  search {name:<22} median {ms:>6} ms  p90 {out['search_p90_ms'][name]:>6} ms  "
              f"found {out['search_found'][name]}")
    print(f"  GET /folders median {out['folders_median_ms']} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--searches-only", action="store_true",
                    help="only the searches (and GET /folders), 20 rounds each: no paging walk, no sending")
    ap.add_argument("--postgresql", action="store_true", help="on a throwaway PostgreSQL cluster instead of SQLite")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-bench-"))
    sink = SmtpSink().start()
    out: dict = {"messages": args.messages, "recipients": args.recipients}
    cluster = None
    try:
        database_url = ""
        if args.postgresql:
            from pen_devstack.postgres import PostgresCluster

            cluster = PostgresCluster().start()
            database_url = cluster.create_database()
        t = time.perf_counter()
        port = make_bench_pen(root, args.messages, database_url=database_url)
        if cluster is not None:  # what autovacuum does on its own shortly after a bulk load
            with cluster.connect(database_url.rsplit("/", 1)[1]) as conn:
                conn.execute("VACUUM ANALYZE")
        out["seed_seconds"] = round(time.perf_counter() - t, 1)
        out.update(index_sizes(database_url or f"sqlite:///{root / 'pen.db'}"))
        if args.searches_only:
            out.update(_searches_only(root, port, sink, args.messages))
            _print_searches(out, args.json)
            return 0
        # One message to --recipients people: above the default cap of 100, raised for this run.
        limits = {"PEN_MAX_RECIPIENTS": str(args.recipients),
                  "PEN_SEND_RECIPIENTS_PER_HOUR": str(max(1000, args.recipients)),
                  # The seeded messages came from the sender within the last hours: not a limit test.
                  "PEN_SEND_MESSAGES_PER_HOUR": str(args.messages + 10)}
        process = PenProcess(root, port, smtp_port=sink.port, env=limits).start()
        try:
            with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60) as c:
                tok = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
                c.headers["Authorization"] = f"Bearer {tok['access_token']}"
                for _ in range(5):  # warm up connection and caches
                    timed_get(c, {"limit": 50})
                # Walk to page 2,000 with 50 a page, keeping the cursor of the 2,000th.
                pages = min(2000, args.messages // 50)
                cursor = None
                walk = time.perf_counter()
                for _ in range(pages - 1):
                    _e, body = timed_get(c, {"limit": 50, **({"cursor": cursor} if cursor else {})})
                    cursor = body["next_cursor"]
                out["walk_seconds"] = round(time.perf_counter() - walk, 1)
                # First and 2,000th page in turns, so that other load on the machine falls on both alike.
                firsts, lasts = [], []
                for _ in range(100):
                    firsts.append(timed_get(c, {"limit": 50})[0])
                    lasts.append(timed_get(c, {"limit": 50, "cursor": cursor})[0])
                _e, last_body = timed_get(c, {"limit": 50, "cursor": cursor})
                out["first_page_median_ms"] = round(statistics.median(firsts) * 1000, 2)
                out["page_2000_median_ms"] = round(statistics.median(lasts) * 1000, 2)
                out["page_2000_over_first"] = round(statistics.median(lasts) / statistics.median(firsts), 2)
                out["page_2000_first_subject"] = last_body["items"][0]["subject"] if last_body["items"] else None
                out["total"] = last_body["total"]

                # The search language over the whole folder (each counts every match for `total`).
                day = last_body["items"][0]["sent_at"][:10] if last_body["items"] else "2026-01-01"
                searches = search_kinds(day)
                folder_times = []
                for _ in range(10):  # GET /folders: the unread counts are counted, not kept
                    t = time.perf_counter()
                    c.get("/folders").raise_for_status()
                    folder_times.append(time.perf_counter() - t)
                out["folders_median_ms"] = round(statistics.median(folder_times) * 1000, 1)
                out["search_median_ms"] = {}
                for name, q in searches.items():
                    times = [timed_get(c, {"limit": 50, "q": q})[0] for _ in range(10)]
                    out["search_median_ms"][name] = round(statistics.median(times) * 1000, 1)

                # A message to 1,000 recipients.
                tok = c.post("/auth/login", json={"email": "sender@bench.example", "password": PASSWORD}).json()
                c.headers["Authorization"] = f"Bearer {tok['access_token']}"
                sessions_before = sink.handler.sessions
                t = time.perf_counter()
                r = c.post("/messages", headers={"Idempotency-Key": "bench-1000"},
                           json={"to": [{"email": f"r{i}@outside.example"} for i in range(args.recipients)],
                                 "subject": "Bench", "body_text": "x"})
                r.raise_for_status()
                out["send_request_seconds"] = round(time.perf_counter() - t, 2)
                got = sink.handler.wait_for(args.recipients, timeout=120)
                out["notify_seconds"] = round(time.perf_counter() - t, 2)
                out["notify_accepted"] = len(got)
                out["notify_smtp_connections"] = sink.handler.sessions - sessions_before
        finally:
            process.stop()
    finally:
        sink.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"mailbox of {out['total']} messages (seeded in {out['seed_seconds']} s)")
        print(f"  first page median      {out['first_page_median_ms']} ms   (target < 20 ms)")
        print(f"  page 2,000 median      {out['page_2000_median_ms']} ms   ratio {out['page_2000_over_first']}"
              f"   (target <= 1: keyset, not OFFSET)")
        print(f"  walked 2,000 pages in  {out['walk_seconds']} s")
        print(f"  GET /folders median    {out['folders_median_ms']} ms (unread counted over the folder)")
        for name, ms in out["search_median_ms"].items():
            print(f"  search {name:<24} {ms} ms (first page of 50 and the count)")
        print(f"{args.recipients} recipients: {out['notify_accepted']} accepted in {out['notify_seconds']} s "
              f"over {out['notify_smtp_connections']} SMTP connections   (target < 10 s; "
              f"the POST itself took {out['send_request_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
