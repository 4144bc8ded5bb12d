"""Fan-out of one message (issue 16): one POST /messages to N recipients, all in To, through
the real pen-server over loopback TLS and a real SMTP sink (aiosmtpd) on 127.0.0.1.

Printed: the request's size and time, the time until the sink has accepted all N
notifications, the bytes of DATA the sink received (and per e-mail), and the size of the To
header every notification carries. N defaults to the server's recipient cap; a larger N
raises the server's cap for this run only (to compare with code that had none).

    /work/venv/bin/python bench/fanout.py [--recipients 100] [--rounds 3] [--json]
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

from pen_server.devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402
from pen_server.settings import Settings  # noqa: E402

PASSWORD = "bench password 1"


def to_header_bytes(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    size, inside = 0, False
    for line in head:
        if line.lower().startswith(b"to:"):
            inside = True
        elif not line[:1] in (b" ", b"\t"):
            inside = False
        if inside:
            size += len(line) + 2
    return size


def one_round(c: httpx.Client, sink: SmtpSink, n: int, tag: str) -> dict:
    sink.handler.clear()
    payload = {"to": [{"email": f"recipient{i:05d}@outside.example", "name": f"Recipient Number {i}"}
                      for i in range(n)], "subject": f"Fan-out {tag}", "body_text": "x"}
    body = json.dumps(payload).encode()
    started = time.perf_counter()
    r = c.post("/messages", content=body, headers={"Idempotency-Key": f"fanout-{tag}",
                                                   "Content-Type": "application/json"})
    r.raise_for_status()
    request_seconds = time.perf_counter() - started
    got = sink.handler.wait_for(n, timeout=600)
    total_seconds = time.perf_counter() - started
    data = [m.data for m in got]
    return {"request_bytes": len(body), "request_seconds": round(request_seconds, 3),
            "total_seconds": round(total_seconds, 3), "accepted": len(got),
            "smtp_data_bytes": sum(len(d) for d in data),
            "bytes_per_email": round(statistics.mean(len(d) for d in data)) if data else 0,
            "to_header_bytes": to_header_bytes(data[0]) if data else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", type=int, default=Settings(data_dir=Path(".")).max_recipients)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n, rounds = max(1, min(args.recipients, 5000)), max(1, min(args.rounds, 10))
    root = Path(tempfile.mkdtemp(prefix="pen-fanout-"))
    sink = SmtpSink().start()
    results = []
    try:
        port = init_pen(root, name="Fan-out PEN", port=free_port())
        add_user(root, "sender@bench.example", "Sender", PASSWORD)
        limits = {"PEN_MAX_RECIPIENTS": str(n), "PEN_SEND_RECIPIENTS_PER_HOUR": str(max(1000, n * rounds)),
                  "PEN_SEND_MESSAGES_PER_HOUR": "1000"}
        process = PenProcess(root, port, smtp_port=sink.port, env=limits).start()
        try:
            with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=600) as c:
                tok = c.post("/auth/login", json={"email": "sender@bench.example", "password": PASSWORD}).json()
                c.headers["Authorization"] = f"Bearer {tok['access_token']}"
                for i in range(rounds):
                    results.append(one_round(c, sink, n, str(i)))
        finally:
            process.stop()
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    out = {"recipients": n, "rounds": results,
           "median_total_seconds": statistics.median(r["total_seconds"] for r in results)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in results:
            print(f"{n} recipients: request {r['request_bytes']:,} B in {r['request_seconds']} s; all "
                  f"{r['accepted']} accepted after {r['total_seconds']} s; SMTP DATA {r['smtp_data_bytes']:,} B "
                  f"({r['bytes_per_email']:,} B an e-mail, To header {r['to_header_bytes']:,} B)")
        print(f"median total: {out['median_total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
