"""A 1,000-recipient fan-out delivered by one `pen-server worker` against two, on PostgreSQL.

One API process (`pen-server run`, `PEN_DELIVERY_IN_API=0`) on a throwaway PostgreSQL
cluster (pen_devstack.postgres), an SMTP sink (aiosmtpd, in this process, on 127.0.0.1), and
for each round one or two `pen-server worker` processes started before it. A round posts
1,000 outside recipients as messages of `--per-message` (the recipient cap, 100) and times
from the first POST until the sink has accepted all 1,000. Rounds alternate one and two
workers, so other load on the machine falls on both alike. Also reported: the CPU seconds
the workers, the API process and this process (the sink) used in each round (Linux /proc).
`--relay-ms N` makes the sink take N ms before it answers each e-mail's DATA, as a distant
relay does (a loopback sink answers at once, so only the CPU is measured).

    /work/venv/bin/python bench/fleet_fanout.py [--rounds 3] [--recipients 1000] [--relay-ms 0] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_devstack import PenProcess, SinkHandler, SmtpSink, add_user, free_port, init_pen  # noqa: E402
from pen_devstack.fleet import WorkerProcess  # noqa: E402
from pen_devstack.postgres import PostgresCluster  # noqa: E402

PASSWORD = "bench password 1"


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SlowRelay(SinkHandler):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def one_round(api: PenProcess, token: str, sink: SmtpSink, workers: int, recipients: int, per_message: int,
              env: dict) -> dict:
    procs = [WorkerProcess(api.data, smtp_port=sink.port, env=env, name=f"worker{i}").start() for i in range(workers)]
    try:
        sink.handler.clear()
        tag = uuid.uuid4().hex[:8]
        before = [cpu(p.proc.pid) for p in procs], cpu(api.proc.pid), own_cpu()
        started = time.perf_counter()
        with httpx.Client(base_url=api.api, verify=str(api.ca_file), timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for first in range(0, recipients, per_message):
                last = min(recipients, first + per_message)
                to = [{"email": f"r{i}.{tag}@outside.example"} for i in range(first, last)]
                c.post("/messages", headers={"Idempotency-Key": f"{tag}-{first}"},
                       json={"to": to, "subject": f"Fleet fan-out {tag}", "body_text": "x"}).raise_for_status()
        got = sink.handler.wait_for(recipients, timeout=600)
        seconds = time.perf_counter() - started
        if len(got) < recipients:
            raise SystemExit(f"only {len(got)} of {recipients} notifications arrived in 600 s")
        ids = {m.message["Message-ID"] for m in got}
        return {"workers": workers, "seconds": round(seconds, 2), "accepted": len(got), "distinct_ids": len(ids),
                "worker_cpu": round(sum(cpu(p.proc.pid) for p in procs) - sum(before[0]), 2),
                "api_cpu": round(cpu(api.proc.pid) - before[1], 2), "sink_cpu": round(own_cpu() - before[2], 2)}
    finally:
        for p in procs:
            p.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--relay-ms", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    recipients, rounds = max(1, min(args.recipients, 5000)), max(1, min(args.rounds, 10))
    per_message = max(1, min(args.per_message, 100))
    root = Path(tempfile.mkdtemp(prefix="pen-fleet-fanout-"))
    cluster = PostgresCluster().start()
    sink = SmtpSink(handler=SlowRelay(max(0, min(args.relay_ms, 5000)) / 1000)).start()
    results = []
    try:
        url = cluster.create_database()
        port = init_pen(root / "pen", name="Fleet PEN", port=free_port(), database_url=url)
        add_user(root / "pen", "sender@bench.example", "Sender", PASSWORD)
        env = {"PEN_DELIVERY_IN_API": "0", "PEN_SEND_RECIPIENTS_PER_HOUR": str(recipients * rounds * 2 + 100),
               "PEN_SEND_MESSAGES_PER_HOUR": "100000"}
        api = PenProcess(root / "pen", port, smtp_port=sink.port, env=env).start()
        try:
            with httpx.Client(base_url=api.api, verify=str(api.ca_file), timeout=60) as c:
                token = c.post("/auth/login", json={"email": "sender@bench.example",
                                                    "password": PASSWORD}).json()["access_token"]
            for _ in range(rounds):
                for workers in (1, 2):
                    results.append(one_round(api, token, sink, workers, recipients, per_message, env))
                    if not args.json:
                        print(results[-1], flush=True)
        finally:
            api.stop()
    finally:
        sink.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    one = [r["seconds"] for r in results if r["workers"] == 1]
    two = [r["seconds"] for r in results if r["workers"] == 2]
    out = {"recipients": recipients, "relay_ms": args.relay_ms, "rounds": results,
           "median_one_worker": round(statistics.median(one), 2),
           "median_two_workers": round(statistics.median(two), 2),
           "speed_up": round(statistics.median(one) / statistics.median(two), 2),
           "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{recipients} recipients, relay {args.relay_ms} ms: one worker {out['median_one_worker']} s, "
              f"two workers {out['median_two_workers']} s (median of {rounds}); two are {out['speed_up']}x as fast; "
              f"load average {out['load_average'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
