"""Download benchmark: one big attachment over HTTPS from a local PEN, fetched with
`curl -o` and with `tui.downloads.download_attachment`, in one run.

    /work/venv/bin/python bench/download_1gib.py              # 1 GiB
    /work/venv/bin/python bench/download_1gib.py --size-mb 200

It starts a devstack PEN (its own data folder, CA and SMTP sink), uploads a file of random
bytes as ann, sends it to bob, and then, signed in as bob, downloads it

* with curl (`curl -o`, no checksum, no fsync: the floor for HTTPS on this machine);
* with download_attachment in a child process (hashing, fsync, move into place), which
  reports its peak RSS growth (VmHWM after minus VmRSS before, from /proc/self/status,
  with VmHWM reset through /proc/self/clear_refs where the kernel allows) and the longest
  stall of its event loop while downloading (what the UI would feel);
* with curl from nginx (the system's package) serving the same blob over TLS with the PEN's
  own certificate and key: a temporary nginx.conf (``daemon off``, a free loopback port,
  ``user root`` when run as root), started before the rounds and stopped after them. In
  every round pen-server and nginx are fetched one right after the other, and the
  pen-server's peak RSS growth during its download is read from /proc/PID/status (VmHWM
  after, reset first through /proc/PID/clear_refs, minus VmRSS before).

Each download is checked against the sha256; the figures are printed per round with the
ratios tui / curl and pen-server / nginx and the load average (and as JSON with --json).
Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PASSWORD = "bench horse battery staple"
ANN, BOB = "ann@bench.example", "bob@bench.example"
MIB = 1 << 20


# ---------------------------------------------------------------- helpers


def status_kib(field: str) -> int:
    """A VmRSS / VmHWM figure of this process, in KiB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(4 * MIB, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def mbps(size: int, seconds: float) -> float:
    return size / MIB / seconds if seconds > 0 else float("inf")


# ---------------------------------------------------------------- the child: download_attachment


def child(args: argparse.Namespace) -> None:
    """Sign in as bob, download with tui.downloads, print one JSON line of figures."""
    import asyncio

    from tui.cli import tune_interpreter
    from tui.downloads import download_attachment
    from tui.pen_client import Attachment, PenClient

    tune_interpreter()  # as `penmail` does before its app starts (tui/cli.py)

    att = Attachment(**json.loads(args.child_attachment))

    async def main() -> dict:
        async with PenClient(args.child_server, ca_file=args.child_ca, timeout=60) as client:
            await client.login(BOB, PASSWORD)
            await client.me()  # warm: the connection is up before the clock starts
            rss_before = status_kib("VmRSS")
            reset = reset_peak()
            hwm_before = status_kib("VmHWM")
            stalls = {"max": 0.0}
            done = asyncio.Event()

            async def ticker() -> None:  # how long the event loop is ever kept from running
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    stalls["max"] = max(stalls["max"], now - last - 0.005)
                    last = now

            tick = asyncio.create_task(ticker())
            start = time.perf_counter()
            path = await download_attachment(client, args.child_message, att, Path(args.child_folder))
            seconds = time.perf_counter() - start
            done.set()
            await tick
            hwm_after = status_kib("VmHWM")
            # The floor of this client stack: the same request through PenClient and httpx,
            # each piece thrown away (no hashing, no disk).
            start = time.perf_counter()
            async with client.download(args.child_message, att.id) as response:
                async for _piece in response.aiter_raw():
                    pass
            floor = time.perf_counter() - start
            return {"seconds": seconds, "httpx_floor_seconds": floor, "path": str(path), "rss_before_kib": rss_before,
                    "hwm_before_kib": hwm_before, "hwm_after_kib": hwm_after,
                    "peak_reset": reset, "max_loop_stall_ms": stalls["max"] * 1000}

    print(json.dumps(asyncio.run(main())), flush=True)


# ---------------------------------------------------------------- the parent


def curl(url: str, out: Path, *, ca: Path, token: str | None = None) -> float:
    cmd = ["curl", "--silent", "--show-error", "--fail", "--cacert", str(ca), "-H", "Accept-Encoding: identity",
           "-o", str(out), "-w", "%{http_code}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    start = time.perf_counter()
    result = subprocess.run(cmd + [url], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0 or result.stdout.strip() != "200":
        raise SystemExit(f"curl failed ({result.returncode}, {result.stdout.strip()}): {result.stderr.strip()}")
    return seconds


NGINX_CONF = """\
daemon off;
{user}worker_processes 1;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
        location / {{ default_type application/octet-stream; }}
    }}
}}
"""


class Nginx:
    """nginx (the system's package) serving the PEN's blob folder over TLS with the PEN's own
    certificate and key, on a free loopback port, in the foreground (``daemon off``), from a
    temporary nginx.conf; stopped by ``stop``. ``exe`` None: not installed."""

    def __init__(self, blobs: Path, tls: Path, work: Path):
        from pen_devstack import free_port

        self.exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        self.proc: subprocess.Popen | None = None
        if not self.exe:
            return
        self.prefix = work / "nginx"
        (self.prefix / "tmp").mkdir(parents=True)
        self.port = free_port()
        self.conf = self.prefix / "nginx.conf"
        # As root, nginx's worker would run as nobody, who cannot read the PEN's folder.
        self.conf.write_text(NGINX_CONF.format(user="user root root;\n" if os.geteuid() == 0 else "",
                                               prefix=self.prefix, port=self.port, cert=tls / "server.pem",
                                               key=tls / "server.key", root=blobs))
        self.ca = tls / "ca.pem"

    def start(self) -> Nginx:
        import socket

        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf), "-p", str(self.prefix)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx exited with {self.proc.returncode}: "
                                 f"{(self.prefix / 'error.log').read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start within 10 s")

    def fetch(self, relative: str, out: Path) -> float:
        return curl(f"https://127.0.0.1:{self.port}/{relative}", out, ca=self.ca)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to the master: a fast shutdown of it and its worker
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def proc_status_kib(pid: int, field: str) -> int:
    """A VmRSS / VmHWM figure of another process, in KiB (0 where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_of(pid: int) -> bool:
    """Reset another process's VmHWM to its current RSS, where allowed (our own child)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sign_in(pen, email: str, timeout: float = 300):
    """An httpx client of the devstack PEN `pen`, signed in as `email`."""
    import httpx

    c = httpx.Client(base_url=pen.api, verify=ssl.create_default_context(cafile=str(pen.ca_file)), timeout=timeout)
    token = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    c.headers["Authorization"] = f"Bearer {token}"
    for _ in range(100):  # a sign-in may be answered a moment before it is committed
        if c.get("/me").status_code == 200:
            return c
        time.sleep(0.02)
    raise SystemExit("signing in failed")


def parent(args: argparse.Namespace) -> dict:
    import httpx

    from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen

    size = args.size_mb * MIB
    work = Path(tempfile.mkdtemp(prefix="penmail-bench-", dir=args.workdir))
    smtp = SmtpSink().start()
    pen = None
    try:
        root = work / "pen"
        port = init_pen(root, name="Bench PEN", port=free_port())
        if size > 1 << 30:  # the PEN's default limit is 1 GiB
            conf = root / "pen-server.toml"
            conf.write_text(conf.read_text().replace(f"max_upload_bytes = {1 << 30}", f"max_upload_bytes = {size}"))
        add_user(root, ANN, "Ann Bench", PASSWORD)
        add_user(root, BOB, "Bob Bench", PASSWORD)
        pen = PenProcess(root, port, smtp_port=smtp.port).start()
        ca = pen.ca_file

        print(f"making {args.size_mb} MiB of random bytes ...", flush=True)
        source = work / "source.bin"
        sha = make_file(source, size)

        def signed_in(email: str) -> httpx.Client:
            return sign_in(pen, email)

        def chunks():
            with source.open("rb") as f:
                while block := f.read(MIB):
                    yield block

        print("uploading ...", flush=True)
        c = signed_in(ANN)
        try:
            start = time.perf_counter()
            r = c.post(f"/uploads?filename={quote('big file.bin')}", content=chunks(),
                       headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
            upload_seconds = time.perf_counter() - start
            if r.status_code != 201:
                raise SystemExit(f"upload failed: {r.status_code} {r.text}")
            att = r.json()
            assert att["sha256"] == sha, "the server hashed something else"
            r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                       json={"to": [{"email": BOB}], "subject": "Big file", "body_text": "Here.",
                             "attachments": [att["id"]]})
            if r.status_code != 201:
                raise SystemExit(f"sending failed: {r.status_code} {r.text}")
            message_id = r.json()["id"]
        finally:
            c.close()
        source.unlink()  # the server has its own copy; keep the disk for the downloads

        results: dict = {"size_mib": args.size_mb, "upload_seconds": upload_seconds, "rounds": [],
                         "loadavg_before": os.getloadavg()}
        url = f"{pen.api}/messages/{message_id}/attachments/{att['id']}"
        blob = next((root / "blobs").rglob(sha), None) or next(root.rglob(sha))
        blobs = root / "blobs" if (root / "blobs").is_dir() else blob.parent
        nginx = Nginx(blobs, root / "tls", work)
        if nginx.exe:
            nginx.start()
        else:
            print("nginx: not installed, skipped (install nginx to compare with a C server)")
        server_pid = pen.proc.pid
        for n in range(args.rounds):
            print(f"round {n + 1}: curl -o from pen-server ...", flush=True)
            c = signed_in(BOB)
            token = c.headers["Authorization"].split()[1]
            c.close()
            out = work / "curl.out"
            server_rss_before = proc_status_kib(server_pid, "VmRSS")
            server_reset = reset_peak_of(server_pid)
            curl_seconds = curl(url, out, ca=ca, token=token)
            server: dict[str, Any] = {"server_rss_before_kib": server_rss_before, "server_peak_reset": server_reset,
                      "server_hwm_after_kib": proc_status_kib(server_pid, "VmHWM"),
                      "server_rss_after_kib": proc_status_kib(server_pid, "VmRSS")}
            curl_ok = out.stat().st_size == size and sha256_of(out) == sha
            out.unlink()
            if nginx.exe:  # the same file, right after, over the same loopback
                print(f"round {n + 1}: curl -o from nginx ...", flush=True)
                server["nginx_seconds"] = nginx.fetch(blob.relative_to(blobs).as_posix(), out)
                server["nginx_verified"] = out.stat().st_size == size and sha256_of(out) == sha
                out.unlink()

            print(f"round {n + 1}: tui.downloads ...", flush=True)
            folder = work / "downloads"
            folder.mkdir(exist_ok=True)
            # "--name=value": an id may start with "-"
            proc = subprocess.run([sys.executable, __file__, f"--child-server={pen.url}", f"--child-ca={ca}",
                                   f"--child-message={message_id}", f"--child-folder={folder}",
                                   f"--child-attachment={json.dumps(att)}"], capture_output=True, text=True,
                                  cwd=REPO)
            if proc.returncode != 0:
                raise SystemExit(f"the download_attachment run failed:\n{proc.stderr}")
            tui = json.loads(proc.stdout.strip().splitlines()[-1])
            got = Path(tui["path"])
            tui["verified"] = got.stat().st_size == size and sha256_of(got) == sha
            got.unlink()
            results["rounds"].append({"curl_seconds": curl_seconds, "curl_verified": curl_ok, **server, **tui})
        results["loadavg_after"] = os.getloadavg()
        return results
    finally:
        if "nginx" in locals():
            nginx.stop()
        if pen is not None:
            pen.stop()
        smtp.stop()
        leave(work, args.keep)


def leave(work: Path, keep: bool) -> None:
    """Remove a run's work folder, or say where it is kept."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def report_head(results: dict) -> None:
    print()
    print(f"file: {results['size_mib']} MiB over HTTPS on loopback ({os.cpu_count()} CPUs; 1-minute load average "
          f"{results['loadavg_before'][0]:.2f} before the downloads, {results['loadavg_after'][0]:.2f} after)")


def size_arguments(p: argparse.ArgumentParser, rounds: int) -> None:
    """The options both download benchmarks take."""
    p.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    p.add_argument("--rounds", type=int, default=rounds, help=f"rounds to run (default {rounds})")
    p.add_argument("--workdir", help="where the PEN and the downloads live (default: the temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")


def report(results: dict) -> None:
    size = results["size_mib"] * MIB
    report_head(results)
    print(f"upload (httpx, for reference): {mbps(size, results['upload_seconds']):8.1f} MiB/s")
    for n, r in enumerate(results["rounds"], 1):
        curl_rate, tui_rate = mbps(size, r["curl_seconds"]), mbps(size, r["seconds"])
        growth = (r["hwm_after_kib"] - r["rss_before_kib"]) / 1024
        print(f"round {n}:")
        print(f"  B. curl -o from pen-server {curl_rate:8.1f} MiB/s  {r['curl_seconds']:7.2f} s  "
              f"verified={r['curl_verified']}")
        if "nginx_seconds" in r:
            nginx_rate = mbps(size, r["nginx_seconds"])
            print(f"     curl -o from nginx      {nginx_rate:8.1f} MiB/s  {r['nginx_seconds']:7.2f} s  "
                  f"verified={r['nginx_verified']}")
            print(f"     ratio pen-server / nginx {curl_rate / nginx_rate:7.2f}")
        server_growth = (r["server_hwm_after_kib"] - r["server_rss_before_kib"]) / 1024
        print(
            f"     server peak RSS growth  {server_growth:8.1f} MiB  "
            f"(VmHWM after {r['server_hwm_after_kib'] / 1024:.1f}"
            f" MiB, VmRSS before {r['server_rss_before_kib'] / 1024:.1f} MiB, after "
            f"{r['server_rss_after_kib'] / 1024:.1f} MiB, peak reset: {r['server_peak_reset']})"
        )
        print(f"  A. tui.download_attachment {tui_rate:8.1f} MiB/s  {r['seconds']:7.2f} s  verified={r['verified']}")
        print(f"     ratio tui / curl        {tui_rate / curl_rate:8.2f}")
        floor_rate = mbps(size, r["httpx_floor_seconds"])
        print(
            f"     httpx, bytes discarded  {floor_rate:8.1f} MiB/s  {r['httpx_floor_seconds']:7.2f} s  "
            f"(ratio to curl {floor_rate / curl_rate:.2f})"
        )
        print(
            f"     client peak RSS growth  {growth:8.1f} MiB  (VmHWM {r['hwm_after_kib'] / 1024:.1f} MiB, "
            f"VmRSS before {r['rss_before_kib'] / 1024:.1f} MiB, peak reset: {r['peak_reset']})"
        )
        print(f"     longest event-loop stall {r['max_loop_stall_ms']:7.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size_arguments(p, rounds=1)
    for name in ("server", "ca", "message", "folder", "attachment"):
        p.add_argument(f"--child-{name}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_server:
        child(args)
        return
    run_and_report(args, parent, report)


def run_and_report(args: argparse.Namespace, run, show) -> None:
    """Run a download benchmark (curl times it) and print its figures, as JSON too with --json."""
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed; the downloads are timed with it.")
    results = run(args)
    show(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
