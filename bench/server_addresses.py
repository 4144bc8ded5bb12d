"""GET /addresses (address completion) on loopback TLS over a large address set: a reader
with `--people` correspondents and a PEN of `--members` members, the words written straight
into the database as the server keeps them (pen_server.addresses.words), then the median and
95th percentile of each prefix over `--rounds` requests; and one message to 100 people
(POST /messages, which keeps the words of 101 copies) against one to a single person.

    /work/venv/bin/python bench/server_addresses.py [--people 50000] [--members 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402

PASSWORD = "bench password 1"
FIRST = ["Omar", "Linda", "Ana", "Maria", "Mark", "Olga", "Peter", "Rosa", "Sam", "Tomas", "Uma", "Yusuf"]
LAST = ["Haddad", "Park", "Okafor", "Moss", "Stone", "Lee", "Ruiz", "Nguyen", "Kowalski", "Schmidt"]
PREFIXES = ["a", "ma", "oma", "omar h", "okafor", "person1234", "zzz"]


def seed(data: Path, people: int, members: int) -> None:
    from sqlalchemy import insert, select

    from pen_server.addresses import words
    from pen_server.db import Database
    from pen_server.models import AddressWord, MemberWord, User, new_id
    from pen_server.settings import load_settings

    db = Database(load_settings(data).database_url)
    with db.session() as s:
        reader = s.scalar(select(User).where(User.email == "reader@bench.example"))
    rows = []
    for i in range(people):
        name = f"{FIRST[i % len(FIRST)]} {LAST[i // len(FIRST) % len(LAST)]}{i}"
        email = f"person{i}@outside{i % 97}.example"
        rows += [{"user_id": reader.id, "word": w, "email": email, "name": name} for w in words(email, name)]
    users, member_rows = [], []
    for i in range(members):
        uid, email, name = new_id(), f"member{i}@bench.example", f"{FIRST[-1 - i % len(FIRST)]} Member{i}"
        users.append({"id": uid, "email": email, "display_name": name, "role": "member"})
        member_rows += [{"word": w, "user_id": uid} for w in words(email, name)]
    with db.engine.begin() as conn:
        if users:
            conn.execute(insert(User), users)
            conn.execute(insert(MemberWord), member_rows)
        for i in range(0, len(rows), 20000):
            conn.execute(insert(AddressWord), rows[i:i + 20000])
    db.dispose()


def timed(call) -> float:
    began = time.perf_counter()
    r = call()
    assert r.status_code in (200, 201), r.text
    return (time.perf_counter() - began) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-bench-addresses-"))
    figures: dict = {"people": args.people, "members": args.members, "rounds": args.rounds}
    with ExitStack() as cleanup:  # the PEN stops, then the sink, then the data goes
        cleanup.callback(shutil.rmtree, root, True)
        sink = SmtpSink().start()
        cleanup.callback(sink.stop)
        port = free_port()
        init_pen(root, port=port)
        add_user(root, "reader@bench.example", "Reader", PASSWORD)
        began = time.perf_counter()
        seed(root, args.people, args.members)
        figures["seed_s"] = round(time.perf_counter() - began, 1)
        limits = {"PEN_MAX_RECIPIENTS": "200", "PEN_SEND_RECIPIENTS_PER_HOUR": "100000"}
        process = PenProcess(root, port, smtp_port=sink.port, env=limits).start()
        cleanup.callback(process.stop)
        with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60) as c:
            tok = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
            c.headers["Authorization"] = f"Bearer {tok['access_token']}"
            for prefix in PREFIXES:
                found = len(c.get("/addresses", params={"prefix": prefix, "limit": 10}).json()["items"])
                times = sorted(timed(lambda p=prefix: c.get("/addresses", params={"prefix": p, "limit": 10}))
                               for _ in range(args.rounds))
                figures[f"prefix {prefix!r}"] = {"found": found, "median_ms": round(statistics.median(times), 2),
                                                 "p95_ms": round(times[int(len(times) * 0.95)], 2)}
            for label, count in (("send_to_1", 1), ("send_to_100", 100)):
                times = []
                for _ in range(10):
                    tag = uuid.uuid4().hex[:8]
                    to = [{"email": f"new{k}-{tag}@else.example", "name": f"New Person{k}"} for k in range(count)]
                    times.append(timed(lambda to=to: c.post(
                        "/messages", json={"to": to, "subject": "bench", "body_text": "x"},
                        headers={"Idempotency-Key": uuid.uuid4().hex})))
                figures[f"{label}_median_ms"] = round(statistics.median(times), 1)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
