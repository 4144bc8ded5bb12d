"""pen-server's web pages (issue 9) over a mailbox of 100,000 messages, on loopback TLS:
the median answer time and the weight of each page a person sees.

The reader's 100,000 messages are written straight into the database (as in
bench/server_mailbox.py); one message more, with an attachment and an HTML body, is sent
through the API to the reader and to an outside address, whose notification e-mail (caught
by a local SMTP sink) gives the link for the landing page. Each page is then fetched in
turns with the others, `--rounds` times, as a browser would (its cookie, keep-alive).

    /work/venv/bin/python bench/web_pages.py [--messages 100000] [--rounds 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server_mailbox import PASSWORD, make_bench_pen  # noqa: E402
from pen_server.devstack import PenProcess, SmtpSink  # noqa: E402


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="leave the data folder")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-web-bench-"))
    sink = SmtpSink().start()
    out: dict = {"messages": args.messages, "rounds": args.rounds}
    try:
        t = time.perf_counter()
        port = make_bench_pen(root, args.messages)
        out["seed_seconds"] = round(time.perf_counter() - t, 1)
        process = PenProcess(root, port, smtp_port=sink.port).start()
        try:
            with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60) as api:
                tok = api.post("/auth/login", json={"email": "sender@bench.example", "password": PASSWORD}).json()
                api.headers["Authorization"] = f"Bearer {tok['access_token']}"
                att = api.post("/uploads?filename=report.pdf", content=b"%PDF bench " * 1000,
                               headers={"Content-Type": "application/pdf"}).json()
                sent = api.post("/messages", headers={"Idempotency-Key": "web-bench"}, json={
                    "to": [{"email": "reader@bench.example"}, {"email": "guest@outside.example"}],
                    "subject": "Bench page", "body_text": "Plain body. " * 50,
                    "body_html": "<p>HTML <b>body</b></p>" * 50, "attachments": [att["id"]]}).json()
            mails = sink.handler.wait_for(1, timeout=60)
            body = mails[0].message.get_body(("plain",)).get_content()
            link = re.search(r"https://\S+/m/\S+", body).group(0)
            landing = "/" + link.split("/", 3)[3]
            mid = sent["id"]
            with httpx.Client(base_url=process.url, verify=str(process.ca_file), timeout=60) as web:
                page = web.get("/login")
                r = web.post("/login", data={"csrf": csrf(page.text), "email": "reader@bench.example",
                                             "password": PASSWORD, "next": "/"})
                assert r.status_code == 303, r.text
                first = web.get("/")
                older = re.search(r'href="(/\?folder=inbox&amp;cursor=[^"]+)"', first.text).group(1)
                deep = older.replace("&amp;", "&")
                walk = max(0, min(50, args.messages // 40 - 3))
                for _ in range(walk):  # up to fifty pages further down, by the pages' own links
                    nxt = re.search(r'href="(/\?folder=inbox&amp;cursor=[^"]+)"', web.get(deep).text)
                    deep = nxt.group(1).replace("&amp;", "&")
                pages = {"inbox (newest)": "/", f"inbox (page {walk + 2})": deep, "message": f"/m/{mid}",
                         "message body frame": f"/m/{mid}/body", "reply form": f"/m/{mid}/reply?all=1",
                         "landing (link)": landing, "login": "/login", "stylesheet": "/static/pen.css"}
                anonymous = {"landing (link)", "login", "stylesheet"}
                with httpx.Client(base_url=process.url, verify=str(process.ca_file), timeout=60) as stranger:
                    times: dict[str, list[float]] = {name: [] for name in pages}
                    weights: dict[str, int] = {}
                    for _ in range(args.rounds + 5):
                        for name, path in pages.items():
                            client = stranger if name in anonymous else web
                            t = time.perf_counter()
                            r = client.get(path)
                            times[name].append(time.perf_counter() - t)
                            assert r.status_code == 200, (name, r.status_code, r.text[:200])
                            weights[name] = len(r.content)
            out["pages"] = {name: {"median_ms": round(statistics.median(ts[5:]) * 1000, 2),
                                   "p90_ms": round(sorted(ts[5:])[int(len(ts[5:]) * 0.9)] * 1000, 2),
                                   "bytes": weights[name]} for name, ts in times.items()}
        finally:
            process.stop()
    finally:
        sink.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.messages} messages (seeded in {out['seed_seconds']} s), {args.rounds} rounds")
        for name, p in out["pages"].items():
            print(f"  {name:20} median {p['median_ms']:7.2f} ms   p90 {p['p90_ms']:7.2f} ms   {p['bytes']:6} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
