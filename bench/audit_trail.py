"""The audit trail's cost (issue 20), side by side with the code before it, in one run:

1. GET /messages/{id} by a recipient, over loopback TLS: each read now writes an audit row
   (and the first one sets opened_at). Median of many reads, the two PENs taking turns in
   rounds so a loaded machine weighs on both alike.
2. One message to 1,000 recipients: the POST's time, and the time until a local aiosmtpd
   has all 1,000 notifications (each `sent` is now an audit row, written with its status).
3. The rows' size: 100,000 read rows appended as the server writes them (real ids,
   addresses and client address), and the bytes of audit_log and its indexes.

"Before" is the tree at REV (default: where this branch left main), unpacked with
`git archive` and run with PYTHONPATH pointing at it; "after" is this working tree.

    .venv/bin/python bench/audit_trail.py [--before REV] [--reads 600] [--sends 3] [--rows 100000]
        [--postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pen_devstack import PenProcess, SmtpSink, free_port  # noqa: E402

PASSWORD = "bench password 1"
LIMITS = {"PEN_MAX_RECIPIENTS": "5000", "PEN_SEND_MESSAGES_PER_HOUR": "1000000",
          "PEN_SEND_RECIPIENTS_PER_HOUR": "10000000"}


def unpack(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "pen_server"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cli(tree: Path, *args: str, stdin: str = "") -> None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, "-m", "pen_server", *args], input=stdin, text=True, check=True, env=env,
                   capture_output=True)


class Side:
    def __init__(self, name: str, tree: Path, root: Path, sink: SmtpSink, database_url: str):
        self.name, self.tree = name, tree
        data = root / name
        port = free_port()
        cli(tree, "init", "--data", str(data), "--name", "Bench", "--base-url", f"https://localhost:{port}",
            *(["--database-url", database_url] if database_url else []))
        for email in ("sender@bench.example", "reader@bench.example"):
            cli(tree, "user", "add", "--data", str(data), "--email", email, "--name", email.split("@")[0],
                stdin=PASSWORD + "\n")
        self.process = PenProcess(data, port, smtp_port=sink.port, env={**LIMITS, "PYTHONPATH": str(tree)}).start()
        self.client = httpx.Client(base_url=self.process.api, verify=str(self.process.ca_file), timeout=120)
        self.sender = self._token("sender@bench.example")
        self.reader = self._token("reader@bench.example")
        self.message = self.send(["reader@bench.example"])[0]

    def _token(self, email: str) -> dict:
        r = self.client.post("/auth/login", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def send(self, recipients: list[str]) -> tuple[str, float]:
        body = {"to": [{"email": r} for r in recipients], "subject": "Referral", "body_text": "Please see."}
        t = time.perf_counter()
        r = self.client.post("/messages", json=body, headers={**self.sender, "Idempotency-Key": uuid.uuid4().hex})
        took = time.perf_counter() - t
        r.raise_for_status()
        return r.json()["id"], took

    def reads(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            r = self.client.get(f"/messages/{self.message}", headers=self.reader)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
        return times

    def stop(self) -> None:
        self.client.close()
        self.process.stop(10)


def fan_out(side: Side, sink: SmtpSink, domain: str) -> tuple[float, float]:
    """POST time and time until the sink has all 1,000 notifications."""
    recipients = [f"r{i}@{domain}" for i in range(1000)]
    before = len(sink.received)
    start = time.perf_counter()
    _mid, post = side.send(recipients)
    deadline = start + 600
    while len(sink.received) - before < 1000 and time.perf_counter() < deadline:
        time.sleep(0.01)
    return post, time.perf_counter() - start


def rows_size(database_url: str, rows: int) -> dict:
    """Append `rows` read rows as the server writes them; the table's and indexes' bytes."""
    from sqlalchemy import text

    from pen_server import audit
    from pen_server.db import Database, migrate
    from pen_server.models import new_id

    migrate(database_url)
    db = Database(database_url)
    messages = [new_id() for _ in range(1000)]
    readers = [(new_id(), f"patient{i}@outside.example") for i in range(500)]
    single = []  # first, rows one a transaction, as a read writes its row: the added time per read
    for i in range(min(2000, rows)):
        t = time.perf_counter()
        with db.session() as s:
            audit.append(s, [audit.Entry("read", audit.Who(*readers[i % 500], "api", "203.0.113.7"),
                                         messages[i % 1000])])
        single.append(time.perf_counter() - t)
    batch = 1000
    for first in range(len(single), rows, batch):
        with db.session() as s:
            audit.append(s, [audit.Entry("read", audit.Who(*readers[(first + i) % 500], "api", "203.0.113.7"),
                                         messages[(first + i) % 1000]) for i in range(min(batch, rows - first))])
    names = ["audit_log", "ix_audit_message", "ix_audit_actor", "ix_audit_recipient", "ix_audit_at"]
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            found: dict[str, int] = dict(conn.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all())
            sizes = {n: int(found.get(n, 0)) for n in names}
        else:
            sizes = {n: int(conn.scalar(text("SELECT pg_relation_size(:n)"), {"n": n})) for n in names}
    with db.session() as s:
        whole = audit.verify(s)
    db.dispose()
    return {"rows": rows, "bytes": sizes, "total_bytes": sum(sizes.values()), "verified_rows": whole.rows,
            "append_one_ms_median": round(statistics.median(single) * 1000, 3),
            "append_one_ms_p90": round(sorted(single)[int(len(single) * 0.9)] * 1000, 3)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--before", default=None, help="the revision to compare with (default: merge-base with main)")
    p.add_argument("--reads", type=int, default=600)
    p.add_argument("--sends", type=int, default=3)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--postgres", action="store_true", help="both PENs on PostgreSQL (a throwaway cluster)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rev = args.before or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                        capture_output=True, text=True).stdout.strip()
    cluster = None
    if args.postgres:
        from pen_devstack.postgres import PostgresCluster

        cluster = PostgresCluster().start()
    result: dict = {"before": rev, "database": "postgresql" if cluster else "sqlite"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sink = SmtpSink().start()
        new_db = cluster.create_database if cluster else (lambda: "")
        sides = [Side("before", unpack(rev, root / "tree-before"), root, sink, new_db()),
                 Side("after", ROOT, root, sink, new_db())]
        try:
            reads: dict[str, list[float]] = {s.name: [] for s in sides}
            for side in sides:
                side.reads(20)  # warm-up
            rounds = 10
            for _ in range(rounds):
                for side in sides:
                    reads[side.name] += side.reads(args.reads // rounds)
            medians = {n: statistics.median(t) * 1000 for n, t in reads.items()}
            result["get_message_ms"] = {**{n: round(m, 2) for n, m in medians.items()},
                                        "ratio": round(medians["after"] / medians["before"], 3)}
            posts: dict[str, list[float]] = {s.name: [] for s in sides}
            drains: dict[str, list[float]] = {s.name: [] for s in sides}
            for i in range(args.sends):
                for side in sides:
                    post, drain = fan_out(side, sink, f"{side.name}{i}.example")
                    posts[side.name].append(post)
                    drains[side.name].append(drain)
            for key, values in (("send_1000_post_s", posts), ("send_1000_delivered_s", drains)) if args.sends else ():
                med = {n: statistics.median(v) for n, v in values.items()}
                result[key] = {**{n: round(m, 3) for n, m in med.items()},
                               "ratio": round(med["after"] / med["before"], 3)}
        finally:
            for side in sides:
                side.stop()
            sink.stop()
        if args.rows:
            size_url = cluster.create_database() if cluster else f"sqlite:///{root / 'rows.db'}"
            result["rows_size"] = rows_size(size_url, args.rows)
    if cluster:
        cluster.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        g = result["get_message_ms"]
        print(f"{result['database']}, before = {rev[:10]}")
        print(f"GET /messages/{{id}} median: before {g['before']} ms, after {g['after']} ms (x{g['ratio']})")
        if args.sends:
            p1, d = result["send_1000_post_s"], result["send_1000_delivered_s"]
            print(f"1,000-recipient POST median: before {p1['before']} s, after {p1['after']} s (x{p1['ratio']})")
            print(f"1,000 notifications delivered, median: before {d['before']} s, after {d['after']} s "
                  f"(x{d['ratio']})")
        if args.rows:
            r = result["rows_size"]
            print(f"{r['rows']} read rows: {r['total_bytes'] / 1e6:.1f} MB with indexes ({r['bytes']}); "
                  f"chain verified over {r['verified_rows']} rows; one row a transaction: median "
                  f"{r['append_one_ms_median']} ms, p90 {r['append_one_ms_p90']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
