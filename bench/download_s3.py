"""Download benchmark, object store against local folder: one big attachment fetched with
`curl -o` over HTTPS from two devstack PENs in one run, one keeping its attachments in its
data folder (the default) and one in a bucket of a real S3 server (`rclone serve s3` over
a folder of this machine, pen_devstack/s3.py), one right after the other in each round.

    /work/venv/bin/python bench/download_s3.py              # 1 GiB, 3 rounds
    /work/venv/bin/python bench/download_s3.py --size-mb 256 --rounds 1

Both PENs get the same file of random bytes (uploaded as ann, sent to bob); each download
is checked against its sha256. Printed per round: MiB/s of each, the ratio bucket / folder
(the target is at least 0.8), the peak RSS growth of each pen-server during its download,
the CPU seconds it used (and rclone's, for the bucket: on a loaded two-core machine the
S3 server competes for the same cores), and the load average; the median ratio at the end
(and all of it as JSON with --json).
Reuses bench/download_1gib.py's helpers. Loopback only; not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from download_1gib import (  # noqa: E402
    ANN,
    BOB,
    MIB,
    PASSWORD,
    curl,
    leave,
    make_file,
    mbps,
    proc_status_kib,
    report_head,
    reset_peak_of,
    run_and_report,
    sha256_of,
    sign_in,
    size_arguments,
)


def start_pen(root: Path, smtp, size: int, env: dict):
    from pen_devstack import PenProcess, add_user, free_port, init_pen

    port = init_pen(root, name="Bench PEN", port=free_port())
    if size > 1 << 30:
        conf = root / "pen-server.toml"
        conf.write_text(conf.read_text().replace(f"max_upload_bytes = {1 << 30}", f"max_upload_bytes = {size}"))
    add_user(root, ANN, "Ann Bench", PASSWORD)
    add_user(root, BOB, "Bob Bench", PASSWORD)
    return PenProcess(root, port, smtp_port=smtp.port, env=env).start()


def upload_and_send(pen, source: Path, size: int, sha: str) -> tuple[str, float]:
    """The file uploaded as ann and sent to bob: (its download URL, upload seconds)."""

    def chunks():
        with source.open("rb") as f:
            while block := f.read(MIB):
                yield block

    c = sign_in(pen, ANN, timeout=600)
    try:
        start = time.perf_counter()
        r = c.post(f"/uploads?filename={quote('big file.bin')}", content=chunks(),
                   headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        seconds = time.perf_counter() - start
        if r.status_code != 201 or r.json()["sha256"] != sha:
            raise SystemExit(f"upload failed: {r.status_code} {r.text}")
        att = r.json()
        r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": BOB}], "subject": "Big file", "body_text": "Here.",
                         "attachments": [att["id"]]})
        if r.status_code != 201:
            raise SystemExit(f"sending failed: {r.status_code} {r.text}")
    finally:
        c.close()
    return f"{pen.api}/messages/{r.json()['id']}/attachments/{att['id']}", seconds


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU time of a process so far (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_download(pen, url: str, out: Path, size: int, sha: str, helper_pid: int | None) -> dict:
    c = sign_in(pen, BOB)
    token = c.headers["Authorization"].split()[1]
    c.close()
    pid = pen.proc.pid
    rss_before = proc_status_kib(pid, "VmRSS")
    reset_peak_of(pid)
    cpu_before = cpu_seconds(pid), cpu_seconds(helper_pid)
    seconds = curl(url, out, ca=pen.ca_file, token=token)
    cpu = cpu_seconds(pid) - cpu_before[0], cpu_seconds(helper_pid) - cpu_before[1]
    growth = (proc_status_kib(pid, "VmHWM") - rss_before) / 1024
    verified = out.stat().st_size == size and sha256_of(out) == sha
    out.unlink()
    return {"seconds": seconds, "mib_s": mbps(size, seconds), "server_peak_growth_mib": growth, "verified": verified,
            "server_cpu_seconds": cpu[0], "s3_cpu_seconds": cpu[1]}


def run(args: argparse.Namespace) -> dict:
    from pen_devstack import SmtpSink
    from pen_devstack.s3 import HOW_TO_ENABLE, S3Server, rclone_binary

    if rclone_binary() is None:
        raise SystemExit(HOW_TO_ENABLE)
    size = args.size_mb * MIB
    work = Path(tempfile.mkdtemp(prefix="penmail-bench-s3-", dir=args.workdir))
    smtp = SmtpSink().start()
    s3 = S3Server(work / "s3")
    pens = []
    try:
        s3.start()
        local = start_pen(work / "pen-local", smtp, size, {})
        pens.append(local)
        bucket = start_pen(work / "pen-s3", smtp, size, s3.env())
        pens.append(bucket)
        print(f"making {args.size_mb} MiB of random bytes ...", flush=True)
        source = work / "source.bin"
        sha = make_file(source, size)
        print("uploading to both ...", flush=True)
        local_url, local_up = upload_and_send(local, source, size, sha)
        bucket_url, bucket_up = upload_and_send(bucket, source, size, sha)
        source.unlink()
        assert any(p.name == sha for p in s3.bucket_dir.rglob(sha)), "the blob is not in the bucket"
        results: dict = {"size_mib": args.size_mb, "upload_seconds": {"folder": local_up, "bucket": bucket_up},
                         "rounds": [], "loadavg_before": os.getloadavg()}
        out = work / "curl.out"
        for n in range(args.rounds):
            # Alternate which goes first, so neither always has the warmer page cache.
            order = [("folder", local, local_url, None), ("bucket", bucket, bucket_url, s3.proc.pid)]
            if n % 2:
                order.reverse()
            row: dict = {"loadavg": os.getloadavg()[0]}
            for name, pen, url, helper in order:
                print(f"round {n + 1}: curl -o from the PEN with its attachments in the {name} ...", flush=True)
                row[name] = timed_download(pen, url, out, size, sha, helper)
            row["ratio"] = row["bucket"]["mib_s"] / row["folder"]["mib_s"]
            results["rounds"].append(row)
        results["loadavg_after"] = os.getloadavg()
        results["median_ratio"] = statistics.median(r["ratio"] for r in results["rounds"])
        return results
    finally:
        for pen in pens:
            pen.stop()
        s3.stop()
        smtp.stop()
        leave(work, args.keep)


def report(results: dict) -> None:
    size = results["size_mib"] * MIB
    up = results["upload_seconds"]
    report_head(results)
    print(f"upload (httpx, for reference): folder {mbps(size, up['folder']):7.1f} MiB/s, "
          f"bucket {mbps(size, up['bucket']):7.1f} MiB/s")
    for n, r in enumerate(results["rounds"], 1):
        print(f"round {n} (load {r['loadavg']:.2f}):")
        for name in ("folder", "bucket"):
            d = r[name]
            print(f"  {name:6} {d['mib_s']:8.1f} MiB/s  {d['seconds']:7.2f} s  server peak RSS growth "
                  f"{d['server_peak_growth_mib']:6.1f} MiB  CPU: pen-server {d['server_cpu_seconds']:.2f} s"
                  + (f", rclone {d['s3_cpu_seconds']:.2f} s" if name == "bucket" else "")
                  + f"  verified={d['verified']}")
        print(f"  ratio bucket / folder {r['ratio']:6.2f}")
    print(f"median ratio bucket / folder: {results['median_ratio']:.2f} (target at least 0.8)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size_arguments(p, rounds=3)
    run_and_report(p.parse_args(), run, report)


if __name__ == "__main__":
    main()
