"""`GET /messages` requests per second with one API process against two (`pen-server run
--workers 1` and `--workers 2`), on PostgreSQL.

A throwaway PostgreSQL cluster (pen_devstack.postgres), one PEN on it with `--messages`
messages in the reader's inbox (sent through the API), delivery off in the API
(`PEN_DELIVERY_IN_API=0`: only requests are measured). Each round starts the server with 1
or 2 processes, warms it for 2 s, then runs `wrk` (C, keep-alive, `--connections`
connections, one thread) for `--seconds` against the first page of the inbox (50 summaries),
signed in. Rounds alternate 1 and 2 processes. Reported per round: requests per second, the
median and 99th percentile latency wrk saw, and the CPU seconds the server's processes,
PostgreSQL's and wrk used (Linux /proc), which say what the machine spent its cores on.

wrk is Debian's (`apt-get install wrk`); it does not check the server's certificate, and it
only ever talks to the loopback server this script started.

    /work/venv/bin/python bench/api_processes.py [--rounds 3] [--seconds 10] [--connections 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_devstack import PenProcess, add_user, free_port, init_pen  # noqa: E402
from pen_devstack.postgres import PostgresCluster  # noqa: E402

PASSWORD = "bench password 1"


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree(pid: int) -> list[int]:
    """pid and its children (the supervisor and the API processes of --workers N)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(c) for c in children)]


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    master = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return tree(master)


def wrk(url: str, token: str, seconds: int, connections: int) -> tuple[dict, float]:
    proc = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H",
                             f"Authorization: Bearer {token}", url], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"wrk failed: {out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def latency(pct: str) -> str:
        found = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        return found.group(1) if found else "?"

    return ({"rps": rps, "p50": latency("50"), "p99": latency("99"), "non_2xx": int(errors.group(1)) if errors else 0},
            usage.ru_utime + usage.ru_stime)


def one_round(root: Path, env: dict, cluster: PostgresCluster, token: str, processes: int, args) -> dict:
    server = PenProcess(root, free_port(), env=env, args=("--workers", str(processes))).start()
    try:
        deadline = time.monotonic() + 30
        while len(tree(server.proc.pid)) < processes + (processes > 1):
            if time.monotonic() > deadline:
                raise SystemExit("the API processes did not start")
            time.sleep(0.1)
        url = server.api + "/messages?folder=inbox&limit=50"
        wrk(url, token, 2, args.connections)  # warm: connections, pools, caches
        pids, pg = tree(server.proc.pid), postgres_pids(cluster)
        before = cpu_of(pids), cpu_of(pg)
        result, wrk_cpu = wrk(url, token, args.seconds, args.connections)
        return {"processes": processes, **result, "server_cpu": round(cpu_of(pids) - before[0], 1),
                "postgres_cpu": round(cpu_of(pg) - before[1], 1), "wrk_cpu": round(wrk_cpu, 1)}
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.rounds, args.seconds = max(1, min(args.rounds, 10)), max(2, min(args.seconds, 60))
    args.connections, args.messages = max(1, min(args.connections, 256)), max(1, min(args.messages, 2000))
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    root = Path(tempfile.mkdtemp(prefix="pen-api-processes-"))
    cluster = PostgresCluster().start()
    results = []
    try:
        data = root / "pen"
        init_pen(data, name="Bench PEN", port=free_port(), database_url=cluster.create_database())
        add_user(data, "reader@bench.example", "Reader", PASSWORD)
        add_user(data, "writer@bench.example", "Writer", PASSWORD)
        env = {"PEN_DELIVERY_IN_API": "0", "PEN_SEND_MESSAGES_PER_HOUR": "100000",
               "PEN_SEND_RECIPIENTS_PER_HOUR": "100000"}
        seed = PenProcess(data, free_port(), env=env).start()
        try:
            with httpx.Client(base_url=seed.api, verify=str(seed.ca_file), timeout=60) as c:
                login = c.post("/auth/login", json={"email": "writer@bench.example", "password": PASSWORD})
                c.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                for i in range(args.messages):
                    c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                           json={"to": [{"email": "reader@bench.example"}], "subject": f"Message {i}",
                                 "body_text": "Some text for the snippet. " * 4}).raise_for_status()
                del c.headers["Authorization"]
                token = c.post("/auth/login", json={"email": "reader@bench.example",
                                                    "password": PASSWORD}).json()["access_token"]
        finally:
            seed.stop()
        for _ in range(args.rounds):
            for processes in (1, 2):
                results.append(one_round(data, env, cluster, token, processes, args))
                if not args.json:
                    print(results[-1], flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    one = statistics.median(r["rps"] for r in results if r["processes"] == 1)
    two = statistics.median(r["rps"] for r in results if r["processes"] == 2)
    out = {"rounds": results, "median_rps_one": one, "median_rps_two": two, "ratio": round(two / one, 2),
           "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"GET /messages: one process {one:.0f}/s, two processes {two:.0f}/s (median of {args.rounds}): "
              f"ratio {out['ratio']}; load average {out['load_average'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
