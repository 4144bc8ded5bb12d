"""penmail intercept over IMAP: notifications replaced per second (or, with --sent, sent
messages placed in Sent per second), and the process's memory.

Starts its own PEN (devstack: TLS on loopback, a real SMTP sink), a Dovecot on loopback
(tests/dovecot.py), sends N messages (every tenth with a 100 KiB attachment) from one
user to another, APPENDs the N notification e-mails the sink received to the reader's
INBOX, then runs `penmail intercept --imap --once --json` as a process and reads its
lines as they come: the rate, and its resident memory (VmRSS from /proc) after each tenth
of the messages, and its peak (VmHWM).  Checks at the end that the INBOX holds N real
messages and no notification.  With --sent, the run is the sender's instead: its N sent
messages go to its Sent folder (made by penmail), checked to hold N, and a second run
(nothing left to place) is timed too.  Loopback only; everything in a temporary folder.

    /work/venv/bin/python bench/intercept.py [--messages 1000] [--attachment-kib 100] [--sent] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from download_1gib import proc_status_kib  # noqa: E402

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402
from tests.dovecot import PASSWORD as IMAP_PASSWORD  # noqa: E402
from tests.dovecot import Dovecot  # noqa: E402

PASSWORD = "bench password 1"
READER, SENDER = "reader@bench.example", "sender@bench.example"


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--attachment-kib", type=int, default=100, help="the size of every tenth message's file")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--sent", action="store_true", help="the sent half: the sender's messages placed in Sent")
    args = ap.parse_args()
    n = max(1, min(args.messages, 5000))
    root = Path(tempfile.mkdtemp(prefix="penmail-intercept-bench-"))
    sink = SmtpSink().start()
    dovecot = Dovecot(root / "dovecot")
    pen = None
    out: dict = {"messages": n, "attachment_kib": args.attachment_kib, "half": "sent" if args.sent else "received"}
    try:
        port = free_port()
        init_pen(root / "pen", port=port)
        add_user(root / "pen", READER, "Reader", PASSWORD)
        add_user(root / "pen", SENDER, "Sender", PASSWORD)
        pen = PenProcess(root / "pen", port, smtp_port=sink.port,
                         env={"PEN_SEND_MESSAGES_PER_HOUR": "1000000", "PEN_SEND_RECIPIENTS_PER_HOUR": "1000000"})
        pen.start()
        base = f"https://localhost:{port}"
        with httpx.Client(base_url=pen.api, verify=str(pen.ca_file), timeout=60) as c:
            token = c.post("/auth/login", json={"email": SENDER, "password": PASSWORD}).json()["access_token"]
            c.headers["Authorization"] = f"Bearer {token}"
            blob = os.urandom(max(1, min(args.attachment_kib, 25 * 1024)) * 1024)
            t = time.perf_counter()
            for i in range(n):
                extra = {}
                if i % 10 == 0:
                    r = c.post("/uploads", params={"filename": f"file-{i}.bin"}, content=blob,
                               headers={"Content-Type": "application/octet-stream"})
                    r.raise_for_status()
                    extra["attachments"] = [r.json()["id"]]
                r = c.post("/messages", json={"to": [{"email": READER}], "subject": f"Bench {i}",
                                              "body_text": f"Message {i}.\n" * 20, **extra},
                           headers={"Idempotency-Key": uuid.uuid4().hex})
                r.raise_for_status()
            out["send_seconds"] = round(time.perf_counter() - t, 1)
        dovecot.start()
        who = SENDER if args.sent else READER
        if not args.sent:
            got = sink.handler.wait_for(n, timeout=600)
            notes = [m.data for m in got if READER in m.rcpt_tos]
            assert len(notes) == n, f"{len(notes)} notifications of {n}"
            imap = dovecot.client(READER)
            t = time.perf_counter()
            for raw in notes:
                imap.append("INBOX", raw)
            out["append_seconds"] = round(time.perf_counter() - t, 1)
            imap.logout()

        config = root / "penmail.toml"
        config.write_text(
            f'server = "{base}"\nca_file = "{pen.ca_file}"\nemail = "{who}"\n'
            f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\nuser = "{who}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("PENMAIL_")}
        env.update(PENMAIL_CONFIG=str(config), PENMAIL_STATE_DIR=str(root / "state"), PENMAIL_PASSWORD=PASSWORD,
                   PENMAIL_IMAP_PASSWORD=IMAP_PASSWORD, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONPATH=str(ROOT))
        wanted = "sent_placed" if args.sent else "replaced"

        def run_once() -> tuple[int, float, list, dict]:
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "intercept", "--imap", "--once", "--json"],
                                    env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            done, rss = 0, []
            tail: dict = {"seconds_after": {}}
            for line in proc.stdout:
                doc = json.loads(line)
                if doc.get("event") == wanted:
                    done += 1
                    if done % max(1, n // 10) == 0:
                        rss.append((done, mib(proc_status_kib(proc.pid, "VmRSS"))))
                        tail["seconds_after"][done] = round(time.perf_counter() - t, 1)
                elif "summary" in doc:
                    tail["summary"] = doc["summary"]
                    tail["peak_rss_mib"] = mib(proc_status_kib(proc.pid, "VmHWM"))
            code = proc.wait(60)
            elapsed = time.perf_counter() - t
            assert code == 0, proc.stderr.read().decode()
            return done, elapsed, rss, tail

        placed, elapsed, rss, tail = run_once()
        out.update(tail)  # seconds_after: when each tenth was done (a slowdown as the folder grows shows here)
        out["intercept_seconds"] = round(elapsed, 1)
        out[f"{wanted}_per_second"] = round(placed / elapsed, 1)
        out["rss_mib_after"] = dict(rss)

        imap = dovecot.client(who)
        if args.sent:
            again, elapsed, _, tail = run_once()
            out["second_run_seconds"] = round(elapsed, 2)
            out["second_run_placed"] = again
            imap.select_folder("Sent", readonly=True)
            out["sent_folder"] = len(imap.search(["ALL"]))
            imap.logout()
            assert placed == n and again == 0 and out["sent_folder"] == n, out
        else:
            imap.select_folder("INBOX", readonly=True)
            out["inbox"] = len(imap.search(["ALL"]))
            out["notifications_left"] = len(imap.search(["HEADER", "X-PEN-Message", base]))
            imap.logout()
            assert out["inbox"] == n and out["notifications_left"] == 0, out
    finally:
        dovecot.stop()
        if pen is not None:
            pen.stop()
        sink.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    elif args.sent:
        print(f"{n} sent messages placed in Sent in {out['intercept_seconds']} s: {out['sent_placed_per_second']}/s "
              f"(every tenth with a {args.attachment_kib} KiB attachment)")
        print(f"penmail's resident memory (MiB) after k placed: {out['rss_mib_after']}; peak {out['peak_rss_mib']}")
        print(f"a second run, nothing left to place: {out['second_run_seconds']} s "
              f"(setup: sending {out['send_seconds']} s)")
    else:
        print(f"{n} notifications replaced in {out['intercept_seconds']} s: {out['replaced_per_second']}/s "
              f"(every tenth with a {args.attachment_kib} KiB attachment)")
        print(f"penmail's resident memory (MiB) after k replaced: {out['rss_mib_after']}; peak {out['peak_rss_mib']}")
        print(f"(setup: sending {out['send_seconds']} s, APPEND of the notifications {out['append_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
