"""A fan-out of 1,000 notifications with DKIM signing against the same without.

One PEN (`pen-server run` over TLS on loopback) and an SMTP sink (aiosmtpd, in this
process). Rounds alternate unsigned and signed, so that other load on the machine falls on
both alike: each round sends one message to `--recipients` outside addresses (or, with
`--per-message`, several messages that add up to it, for a PEN that caps recipients per
message; the PEN's recipient cap and hourly limits are raised to fit) and times from the
first POST until the sink has accepted every notification.
Signing is switched by the PEN's own rotation mechanism: the domain's `current` selector
file is there (signed) or not (unsigned); the worker looks at it on every pass, so the
server runs on. Every notification of a signed round is checked to carry a signature, and
of an unsigned round to carry none. Besides the wall time it reports the server process's
CPU time per round (Linux /proc), which other load on a shared machine disturbs far less.

    /work/venv/bin/python bench/dkim_fanout.py [--recipients 1000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from pen_server.devstack import PenProcess, SmtpSink, add_user, free_port, init_pen, run_cli

PASSWORD = "bench password 1"
DOMAIN = "bench.example"


def fan_out(c: httpx.Client, sink: SmtpSink, recipients: int, per_message: int) -> tuple[float, list]:
    sink.handler.clear()
    tag = uuid.uuid4().hex[:8]
    t = time.perf_counter()
    for start in range(0, recipients, per_message):
        to = [{"email": f"r{i}.{tag}@outside.example"} for i in range(start, min(recipients, start + per_message))]
        r = c.post("/messages", headers={"Idempotency-Key": f"{tag}-{start}"},
                   json={"to": to, "subject": f"Bench {tag}", "body_text": "x"})
        r.raise_for_status()
    got = sink.handler.wait_for(recipients, timeout=300)
    elapsed = time.perf_counter() - t
    if len(got) < recipients:
        raise SystemExit(f"only {len(got)} of {recipients} notifications arrived in 300 s")
    return elapsed, got


def server_cpu(process: PenProcess) -> float:
    """User and system CPU seconds of the server process so far (Linux /proc)."""
    fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--per-message", type=int, default=0, help="recipients per message (default: all in one)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each kind (at most 10)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rounds = max(1, min(args.rounds, 10))
    recipients = max(1, min(args.recipients, 5000))
    per_message = args.per_message or recipients
    root = Path(tempfile.mkdtemp(prefix="pen-bench-dkim-"))
    sink = SmtpSink().start()
    times: dict[str, list[float]] = {"unsigned": [], "signed": []}
    cpus: dict[str, list[float]] = {"unsigned": [], "signed": []}
    try:
        port = free_port()
        init_pen(root / "pen", port=port, from_address=f"pen@{DOMAIN}")
        data = root / "pen"
        add_user(data, f"sender@{DOMAIN}", "Sender", PASSWORD)
        run_cli("dkim", "init", "--data", str(data), "--domain", DOMAIN, "--selector", "bench")
        current = data / "dkim" / DOMAIN / "current"
        parked = current.with_name("current.off")
        # The recipient cap and the hourly limits raised, so that one message reaches them all.
        limits = {"PEN_MAX_RECIPIENTS": str(per_message), "PEN_SEND_MESSAGES_PER_HOUR": "1000",
                  "PEN_SEND_RECIPIENTS_PER_HOUR": str(recipients * (2 * rounds + 1))}
        process = PenProcess(data, port, smtp_port=sink.port, env=limits).start()
        try:
            with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=120) as c:
                tok = c.post("/auth/login", json={"email": f"sender@{DOMAIN}", "password": PASSWORD}).json()
                c.headers["Authorization"] = f"Bearer {tok['access_token']}"
                fan_out(c, sink, min(50, recipients), per_message)  # warm-up: connections, caches, the key
                for _ in range(rounds):
                    for kind in ("unsigned", "signed"):
                        if kind == "signed":
                            os.replace(parked, current)
                        else:
                            os.replace(current, parked) if current.exists() else None
                        cpu = server_cpu(process)
                        elapsed, got = fan_out(c, sink, recipients, per_message)
                        cpus[kind].append(server_cpu(process) - cpu)
                        signed = sum(b"DKIM-Signature:" in m.data[:4096] for m in got)
                        assert signed == (len(got) if kind == "signed" else 0), (kind, signed)
                        times[kind].append(elapsed)
                        if not args.json:
                            print(f"  {kind:8} {recipients} accepted in {elapsed:.2f} s "
                                  f"(the server's CPU time {cpus[kind][-1]:.2f} s)")
        finally:
            process.stop()
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    out = {"recipients": recipients, "per_message": per_message, "rounds": rounds,
           "unsigned_seconds": [round(x, 2) for x in times["unsigned"]],
           "signed_seconds": [round(x, 2) for x in times["signed"]],
           "unsigned_median": round(statistics.median(times["unsigned"]), 2),
           "signed_median": round(statistics.median(times["signed"]), 2),
           "server_cpu_unsigned": [round(x, 2) for x in cpus["unsigned"]],
           "server_cpu_signed": [round(x, 2) for x in cpus["signed"]]}
    out["signing_adds_percent"] = round(100 * (out["signed_median"] / out["unsigned_median"] - 1), 1)
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    out["server_cpu_adds_percent"] = round(100 * (cpu["signed"] / cpu["unsigned"] - 1), 1)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{recipients} notifications: unsigned median {out['unsigned_median']} s, signed median "
              f"{out['signed_median']} s: signing adds {out['signing_adds_percent']}% (target < 30%); the "
              f"server's CPU time {round(cpu['unsigned'], 2)} s against {round(cpu['signed'], 2)} s "
              f"(+{out['server_cpu_adds_percent']}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
