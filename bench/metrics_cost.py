"""What counting metrics costs GET /messages (issue 21): two PENs side by side on loopback TLS,
the same data folder contents, one with `[metrics] enabled = true` (the default: each request
counted by route and status and timed into a histogram, in prometheus-client's multiprocess
files) and one with `enabled = false`; GET /messages (first page of 50 of a mailbox of
--messages) asked of each in turns on kept-alive connections, so that other load on the
machine falls on both alike. Printed: the median and p90 of each, and the difference.

    .venv/bin/python bench/metrics_cost.py [--messages 2000] [--rounds 600] [--json]
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

from bench.server_mailbox import PASSWORD, make_bench_pen  # noqa: E402
from pen_devstack import PenProcess, SmtpSink  # noqa: E402


def _pen(root: Path, sink: SmtpSink, messages: int, enabled: bool) -> PenProcess:
    port = make_bench_pen(root, messages)
    with open(root / "pen-server.toml", "a", encoding="utf-8") as f:
        f.write(f"\n[metrics]\nenabled = {'true' if enabled else 'false'}\n")
    return PenProcess(root, port, smtp_port=sink.port).start()


def _client(process: PenProcess) -> httpx.Client:
    c = httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60)
    tok = c.post("/auth/login", json={"email": "reader@bench.example", "password": PASSWORD}).json()
    c.headers["Authorization"] = f"Bearer {tok['access_token']}"
    return c


def _get(c: httpx.Client) -> float:
    t = time.perf_counter()
    r = c.get("/messages", params={"limit": 50})
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    return elapsed


def counting_cost(folder: Path, calls: int = 20000) -> float:
    """Microseconds that counting one request takes in this process (pen_server.metrics.request:
    a counter and a histogram in the multiprocess files), the part of the difference above
    that does not drown in the machine's noise."""
    from pen_server import metrics
    from pen_server.settings import Settings

    folder.mkdir()
    assert metrics.setup(Settings(data_dir=folder))
    t = time.perf_counter()
    for _ in range(calls):
        metrics.request("/api/v1/messages", "GET", 200, 0.004)
    return round((time.perf_counter() - t) / calls * 1e6, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=600)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-bench-metrics-"))
    sink = SmtpSink().start()
    pens = []
    try:
        on = _pen(root / "on", sink, args.messages, True)
        pens.append(on)
        off = _pen(root / "off", sink, args.messages, False)
        pens.append(off)
        a, b = _client(on), _client(off)
        try:
            for _ in range(20):  # warm up connections and caches
                _get(a), _get(b)
            with_metrics, without = [], []
            for i in range(args.rounds):  # alternate which goes first
                if i % 2:
                    with_metrics.append(_get(a))
                    without.append(_get(b))
                else:
                    without.append(_get(b))
                    with_metrics.append(_get(a))
            scrape = httpx.get(on.url + "/metrics", verify=str(on.ca_file), timeout=30)
            counted = [line for line in scrape.text.splitlines()
                       if line.startswith('pen_http_requests_total{method="GET",route="/api/v1/messages"')]
            assert httpx.get(off.url + "/metrics", verify=str(off.ca_file), timeout=30).status_code == 404
        finally:
            a.close()
            b.close()

        def ms(values: list[float], q: float) -> float:
            return round(statistics.quantiles(values, n=100)[int(q) - 1] * 1000, 2) if q != 50 else \
                round(statistics.median(values) * 1000, 2)

        out = {"messages": args.messages, "rounds": args.rounds,
               "with_metrics_median_ms": ms(with_metrics, 50), "without_median_ms": ms(without, 50),
               "with_metrics_p90_ms": ms(with_metrics, 90), "without_p90_ms": ms(without, 90),
               "counted": counted}
        out["median_difference_ms"] = round(out["with_metrics_median_ms"] - out["without_median_ms"], 2)
        out["median_ratio"] = round(out["with_metrics_median_ms"] / out["without_median_ms"], 3)
        out["counting_us_per_request"] = counting_cost(root / "counting")
    finally:
        for process in pens:
            process.stop(5)
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"GET /messages, first page of 50 of {args.messages} messages, {args.rounds} requests each, in turns:")
        print(f"  with metrics:    median {out['with_metrics_median_ms']} ms, p90 {out['with_metrics_p90_ms']} ms")
        print(f"  without metrics: median {out['without_median_ms']} ms, p90 {out['without_p90_ms']} ms")
        print(f"  difference of the medians: {out['median_difference_ms']} ms (ratio {out['median_ratio']})")
        print(f"  counting one request in-process: {out['counting_us_per_request']} us")
        print(f"  counted: {out['counted']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
