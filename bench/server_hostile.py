"""pen-server under hostile load (issue 16), one scenario at a time, loopback only:

1. bodies: 300 MiB request bodies without signing in, one after another (with a
   Content-Length to POST /messages, then chunked to POST /auth/login);
2. sign-ins: 40 clients signing in at once with unknown addresses, again and again;
3. half-open: 1,000 TLS connections that each send half a request head and then nothing.

For each: the server's memory growth (peak VmRSS during the scenario, from VmHWM after
resetting it through /proc/PID/clear_refs, minus VmRSS before; and what is still held
3 s after the attack), and the latency of `GET /api/v1/messages` for a signed-in client on a kept-alive
connection while the attack runs (median, p95, and how many requests failed), plus one
request from a new connection at the end. Targets: growth under 64 MiB, median under
200 ms.

    /work/venv/bin/python bench/server_hostile.py [--seconds 8] [--half-open 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_server.devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402

PASSWORD = "bench password 1"
MiB = 1 << 20
SETTLE_SECONDS = 3.0


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1))


def post_body(pen: PenProcess, path: str, mib: int, chunked: bool) -> bytes:
    """Send up to `mib` MiB until the server answers and closes; returns its answer."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {mib * MiB}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    chunk = (b"100000\r\n" + b"x" * MiB + b"\r\n") if chunked else b"x" * MiB
    return pen.post_raw(head.encode(), chunk, mib)[0]


class GoodClient:
    """A signed-in client reading its inbox, on a kept-alive connection, while an attack runs."""

    def __init__(self, pen: PenProcess, token: str):
        self.pen, self.token = pen, token
        self.times: list[float] = []
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.pen.api, verify=str(self.pen.ca_file), timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def _run(self) -> None:
        with self._client() as c:
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    ok = c.get("/messages", params={"limit": 50}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.times.append(time.perf_counter() - t)
                else:
                    self.failures += 1
                self.stop.wait(0.02)

    def new_connection_seconds(self) -> float | None:
        t = time.perf_counter()
        try:
            with self._client() as c:
                if c.get("/messages", params={"limit": 50}).status_code != 200:
                    return None
        except httpx.HTTPError:
            return None
        return time.perf_counter() - t

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def attack_bodies(pen: PenProcess, stop: threading.Event, counts: dict, ready: threading.Event) -> None:
    ready.set()
    while not stop.is_set():
        for path, chunked in (("/api/v1/messages", False), ("/api/v1/auth/login", True)):
            key = post_body(pen, path, 300, chunked)[9:12].decode(errors="replace") or "no answer"
            counts[key] = counts.get(key, 0) + 1


def attack_sign_ins(pen: PenProcess, stop: threading.Event, counts: dict, ready: threading.Event) -> None:
    def one() -> None:
        with httpx.Client(base_url=pen.api, verify=str(pen.ca_file), timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post("/auth/login", json={"email": f"nobody-{uuid.uuid4().hex[:12]}@bench.example",
                                                    "password": "wrong password"})
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                counts[key] = counts.get(key, 0) + 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    ready.set()
    for t in threads:
        t.join()


def attack_half_open(pen: PenProcess, stop: threading.Event, counts: dict, ready: threading.Event,
                     count: int) -> None:
    """Opens `count` connections (the good client is measured meanwhile too), then holds them."""
    held = []
    try:
        for _ in range(count):
            try:
                s = pen.tls_socket(timeout=10)
                s.sendall(b"GET /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
                held.append(s)
            except OSError as exc:
                counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
        counts["opened"] = len(held)
        ready.set()
        stop.wait()
    finally:
        for s in held:
            s.close()


def scenario(pen: PenProcess, token: str, name: str, attack, seconds: float) -> dict:
    pid = pen.proc.pid
    before = status_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    stop, ready, counts = threading.Event(), threading.Event(), {}
    attacker = threading.Thread(target=attack, args=(pen, stop, counts, ready), daemon=True)
    with GoodClient(pen, token) as good:
        attacker.start()
        ready.wait(120)
        time.sleep(seconds)
        fresh = good.new_connection_seconds()
        stop.set()
    attacker.join(60)
    peak = status_kb(pid, "VmHWM")
    time.sleep(SETTLE_SECONDS)  # the server sees the attack's connections close
    after = status_kb(pid, "VmRSS")
    times = sorted(good.times)
    return {"scenario": name, "rss_before_mib": before / 1024, "peak_growth_mib": (peak - before) / 1024,
            "held_after_mib": (after - before) / 1024, "requests": len(times), "failed": good.failures,
            "median_ms": statistics.median(times) * 1000 if times else None,
            "p95_ms": times[int(len(times) * 0.95) - 1] * 1000 if len(times) >= 20 else None,
            "new_connection_ms": fresh * 1000 if fresh is not None else None, "attack": counts}


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="how long each attack runs")
    ap.add_argument("--half-open", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    args = ap.parse_args()
    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="pen-hostile-"))
    smtp = SmtpSink().start()
    port = free_port()
    init_pen(folder / "pen", port=port)
    add_user(folder / "pen", "reader@bench.example", "Reader", PASSWORD)
    pen = PenProcess(folder / "pen", port, smtp_port=smtp.port).start()
    rows = []
    try:
        with httpx.Client(base_url=pen.api, verify=str(pen.ca_file)) as c:
            token = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}
                           ).json()["access_token"]
            for i in range(30):  # an inbox with something in it
                c.post("/messages", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                       json={"to": [{"email": "reader@bench.example"}], "subject": f"Note {i}", "body_text": "x" * 500})
        rows.append(scenario(pen, token, "quiet (no attack)", lambda p, stop, counts, ready: ready.set(), args.seconds))
        rows.append(scenario(pen, token, "300 MiB bodies", attack_bodies, args.seconds))
        rows.append(scenario(pen, token, "40 sign-ins at once", attack_sign_ins, args.seconds))
        for label in ("", ", again"):  # the second time shows whether what stays held is reused
            rows.append(scenario(pen, token, f"{args.half_open} half-open TLS{label}",
                                 lambda *a: attack_half_open(*a, args.half_open), args.seconds))
    finally:
        pen.stop()
        smtp.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"{'scenario':<29} {'peak +MiB':>9} {'held +MiB':>9} {'median ms':>9} {'p95 ms':>8} {'reqs':>5} "
          f"{'failed':>6} {'new conn ms':>11}  attack")
    for r in rows:
        print(f"{r['scenario']:<29} {r['peak_growth_mib']:>9.1f} {r['held_after_mib']:>9.1f} "
              f"{fmt(r['median_ms'], '.1f'):>9} {fmt(r['p95_ms'], '.1f'):>8} {r['requests']:>5} {r['failed']:>6} "
              f"{fmt(r['new_connection_ms'], '.1f'):>11}  {r['attack']}")
    print(f"(server RSS before the first scenario: {rows[0]['rss_before_mib']:.0f} MiB; targets: growth < 64 MiB, "
          "median < 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
