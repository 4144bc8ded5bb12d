"""Keyset paging on PostgreSQL against SQLite, in one run (issue 13).

Two PENs side by side, one on SQLite and one on a throwaway PostgreSQL cluster
(pen_devstack.postgres: Debian's binaries, a temporary folder, loopback), each with a reader
holding the same number of messages (bench/server_mailbox.py's seeding: bulk INSERTs through
the server's models). Then, over HTTPS on loopback, GET /messages of 50: the first page and
the 2,000th (its cursor found by walking there), in turns across both servers so that other
load on the machine falls on all four alike; the medians, and PostgreSQL over SQLite. Also a
few searches and GET /folders on each, and the plans of the page query (EXPLAIN ANALYZE on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite), to show both read the page index.

After seeding, PostgreSQL gets VACUUM ANALYZE (what autovacuum does on its own shortly after a
bulk load): without statistics its planner guesses.

    /work/venv/bin/python bench/pg_paging.py [--messages 100000] [--rounds 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_mailbox import PASSWORD, make_bench_pen, search_kinds, timed_get  # noqa: E402

from pen_devstack import PenProcess  # noqa: E402
from pen_devstack.postgres import PostgresCluster  # noqa: E402


def page_plans(url: str, cursor: str) -> list[str]:
    """The plan of the 2,000th page's queries, as the server's own code builds them."""
    from sqlalchemy import event, select

    from pen_server import mailbox
    from pen_server.db import Database
    from pen_server.models import User

    db = Database(url)
    seen: list[tuple[str, object]] = []

    def keep(_conn, _cursor, statement, parameters, _context, _many):
        if "FROM mailbox_entries" in statement and "count(" not in statement:
            seen.append((statement, parameters))

    with db.session() as s:
        reader = s.scalar(select(User).where(User.email == "reader@bench.example"))
        event.listen(db.engine, "before_cursor_execute", keep)
        mailbox.page(s, reader, "inbox", 50, cursor, None, None)
        event.remove(db.engine, "before_cursor_execute", keep)
    statement, parameters = seen[-1]
    explain = "EXPLAIN ANALYZE " if db.engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, parameters).all()  # type: ignore[arg-type]
    db.dispose()
    return [" ".join(str(c) for c in row) for row in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-bench-pg-"))
    cluster = PostgresCluster().start()
    out: dict = {"messages": args.messages, "rounds": args.rounds}
    processes: dict[str, PenProcess] = {}
    try:
        for name, url in (("sqlite", ""), ("postgresql", cluster.create_database())):
            t = time.perf_counter()
            port = make_bench_pen(root / name, args.messages, database_url=url)
            if url:
                with cluster.connect(url.rsplit("/", 1)[1]) as conn:
                    conn.execute("VACUUM ANALYZE")
            out[f"{name}_seed_seconds"] = round(time.perf_counter() - t, 1)
            processes[name] = PenProcess(root / name, port, env={
                "PEN_SEND_MESSAGES_PER_HOUR": str(args.messages + 10)}).start()
        clients: dict[str, httpx.Client] = {}
        cursors: dict[str, str] = {}
        for name, process in processes.items():
            c = clients[name] = httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60)
            tok = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
            c.headers["Authorization"] = f"Bearer {tok['access_token']}"
            for _ in range(5):
                timed_get(c, {"limit": 50})
            cursor, walk = None, time.perf_counter()
            for _ in range(min(2000, args.messages // 50) - 1):
                cursor = timed_get(c, {"limit": 50, **({"cursor": cursor} if cursor else {})})[1]["next_cursor"]
            out[f"{name}_walk_2000_pages_seconds"] = round(time.perf_counter() - walk, 1)
            cursors[name] = cursor
        times: dict[str, list[float]] = {f"{n}_{p}": [] for n in processes for p in ("first", "page_2000")}
        pages: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, c in clients.items():
                elapsed, first = timed_get(c, {"limit": 50})
                times[f"{name}_first"].append(elapsed)
                elapsed, pages[name] = timed_get(c, {"limit": 50, "cursor": cursors[name]})
                times[f"{name}_page_2000"].append(elapsed)
        assert [m["subject"] for m in pages["sqlite"]["items"]] == [m["subject"] for m in pages["postgresql"]["items"]]
        out["page_2000_first_subject"] = pages["postgresql"]["items"][0]["subject"]
        for key, values in times.items():
            out[f"{key}_median_ms"] = round(statistics.median(values) * 1000, 2)
        for page in ("first", "page_2000"):
            out[f"{page}_pg_over_sqlite"] = round(statistics.median(times[f"postgresql_{page}"])
                                                  / statistics.median(times[f"sqlite_{page}"]), 2)
        for name, c in clients.items():
            folder_times = []
            for _ in range(10):
                t = time.perf_counter()
                c.get("/folders").raise_for_status()
                folder_times.append(time.perf_counter() - t)
            out[f"{name}_folders_median_ms"] = round(statistics.median(folder_times) * 1000, 1)
            day = timed_get(c, {"limit": 50})[1]["items"][-1]["sent_at"][:10]
            out[f"{name}_search_median_ms"] = {  # the six kinds of server_mailbox.py
                label: round(statistics.median(timed_get(c, {"limit": 50, "q": q})[0] for _ in range(10)) * 1000, 1)
                for label, q in search_kinds(day).items()}
            out[f"{name}_page_2000_plan"] = page_plans(processes[name].database_url, cursors[name])
            c.close()
    finally:
        for process in processes.values():
            process.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.messages} messages in one folder; {args.rounds} rounds of first page and page 2,000 on each")
    for name in ("sqlite", "postgresql"):
        print(f"  {name:<10} first page {out[f'{name}_first_median_ms']:>6} ms   page 2,000 "
              f"{out[f'{name}_page_2000_median_ms']:>6} ms   GET /folders {out[f'{name}_folders_median_ms']} ms   "
              f"searches {out[f'{name}_search_median_ms']}")
    print(f"  PostgreSQL / SQLite: first page {out['first_pg_over_sqlite']}, page 2,000 "
          f"{out['page_2000_pg_over_sqlite']}   (targets: under 20 ms, ratio at most 1.2)")
    for name in ("sqlite", "postgresql"):
        print(f"  plan of page 2,000 on {name}:")
        for line in out[f"{name}_page_2000_plan"]:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
