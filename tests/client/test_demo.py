"""tui.demo: `penmail demo` starts a real PEN with a clinic's mail, seeded through the API,
and leaves nothing behind when it stops (normally, at exit, on SIGTERM or SIGINT)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tui import demo as demo_module
from tui.demo import DISCLAIMERS, FOOTER, DemoError, DemoStack, run_demo

REPO = Path(__file__).resolve().parents[2]
BIG_MB = 2


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; only a live process counts.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture(scope="module")
def stack():
    s = DemoStack(messages=60, big_attachment_mb=BIG_MB)
    began = time.monotonic()
    s.start()
    s.started_in = time.monotonic() - began
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=stack.server + "/api/v1", verify=stack.ca_file, timeout=30) as c:
        r = c.post("/auth/login", json={"email": stack.email, "password": stack.password})
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        _until_signed_in(c)
        yield c


def _until_signed_in(c: httpx.Client) -> None:
    # pen-server may answer the sign-in a moment before it has stored the token.
    deadline = time.monotonic() + 10
    while c.get("/me").status_code == 401 and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="module")
def mailbox(api) -> dict[str, list[dict]]:
    """Every message of the demo user, in full, by folder."""
    out = {}
    for folder in ("inbox", "archive", "trash", "sent"):
        items, cursor = [], None
        while True:
            params = {"folder": folder, "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = api.get("/messages", params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        out[folder] = [api.get(f"/messages/{s['id']}").json() for s in items]
    return out


def test_the_stack_is_up_where_it_says(stack):
    assert stack.server.startswith("https://127.0.0.1:") and stack.server.endswith(str(stack.port))
    assert Path(stack.ca_file).is_file() and Path(stack.ca_file).is_relative_to(stack.data_dir)
    assert stack.data_dir.is_dir() and stack.data_dir.is_relative_to(stack.root)
    assert stack.running and _port_open(stack.port) and _port_open(stack.smtp.port)
    # The certificate verifies against the demo's own CA: no switch to turn checking off.
    r = httpx.get(stack.server + "/api/v1/health", verify=stack.ca_file)
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack.server + "/api/v1/health")


def test_seeding_is_quick_and_counted(stack):
    stats = stack.seed_stats
    assert stats["messages"] == 60
    assert stats["replies"] >= 15 and stats["threads"] >= 15
    assert stats["html"] >= 5 and stats["plain"] >= 5
    assert stats["attachments"] >= 5 and stats["largest_attachment"] == BIG_MB << 20
    assert stats["guests_registered"] == 2 and stats["guest_replies"] >= 2 and stats["guests_invited"] >= 3
    assert stats["notifications_delivered"] == stats["notifications"] > 60
    assert stack.started_in < 60, stack.started_in


def test_demo_user_signs_in_to_a_lived_in_mailbox(stack, api, mailbox):
    me = api.get("/me").json()
    assert me["email"] == stack.email and me["role"] == "member" and me["package"] == "physicians"
    for folder in ("inbox", "archive", "trash", "sent"):
        assert mailbox[folder], f"{folder} is empty"
    inbox = mailbox["inbox"]
    assert any(m["unread"] for m in inbox) and any(not m["unread"] for m in inbox)
    assert not any(m["unread"] for m in mailbox["archive"] + mailbox["trash"])
    counts = stack.seed_stats["demo_mailbox"]
    for folder in ("inbox", "archive", "trash", "sent"):
        assert counts[folder] == len(mailbox[folder])
    # Weeks of mail, newest first, none from the future.
    stamps = [datetime.fromisoformat(m["sent_at"].replace("Z", "+00:00")) for m in inbox]
    assert stamps == sorted(stamps, reverse=True)
    assert (stamps[0] - stamps[-1]).days >= 5
    assert stamps[0].timestamp() <= time.time()


def test_threads_have_replies(mailbox):
    every = {m["id"]: m for folder in mailbox.values() for m in folder}
    replies = [m for m in every.values() if m["in_reply_to"]]
    assert len(replies) >= 10
    linked = [m for m in replies if m["in_reply_to"] in every]
    assert len(linked) >= 5
    for m in linked:
        parent = every[m["in_reply_to"]]
        assert m["thread_id"] == parent["thread_id"]
        assert m["subject"].startswith("Re: ") and m["subject"].endswith(parent["subject"].removeprefix("Re: "))
        assert m["sent_at"] >= parent["sent_at"]
    assert len({m["thread_id"] for m in linked}) >= 3


def test_html_and_plain_bodies(mailbox):
    every = [m for folder in mailbox.values() for m in folder]
    html = [m for m in every if m["body_html"]]
    plain = [m for m in every if m["body_html"] is None]
    assert html and plain
    assert any("<li>" in m["body_html"] for m in html)
    assert any('<a href="https://' in m["body_html"] for m in html)
    assert all(m["body_text"].strip() for m in every)


def test_attachments_download_intact(api, mailbox):
    atts = [(m, a) for folder in mailbox.values() for m in folder for a in m["attachments"]]
    kinds = {a["content_type"] for _, a in atts}
    assert {"text/csv", "application/pdf", "application/dicom"} <= kinds
    small = next((m, a) for m, a in atts if a["content_type"] == "text/csv")
    big = max(atts, key=lambda ma: ma[1]["size"])
    assert small[1]["size"] < 10_000 and big[1]["size"] == BIG_MB << 20
    for m, a in (small, big):
        r = api.get(f"/messages/{m['id']}/attachments/{a['id']}")
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == a["sha256"] and len(r.content) == a["size"]
    assert b"Test,Result,Units" in api.get(f"/messages/{small[0]['id']}/attachments/{small[1]['id']}").content
    pdf = next((m, a) for m, a in atts if a["content_type"] == "application/pdf")
    body = api.get(f"/messages/{pdf[0]['id']}/attachments/{pdf[1]['id']}").content
    assert body.startswith(b"%PDF-1.4") and body.rstrip().endswith(b"%%EOF")


def test_a_registered_guest_replied_in_a_thread(stack, mailbox):
    assert "maria.gonzalez@mailbox.example" in stack.guests
    with httpx.Client(base_url=stack.server + "/api/v1", verify=stack.ca_file, timeout=30) as c:
        r = c.post("/auth/login", json={"email": "maria.gonzalez@mailbox.example",
                                        "password": stack.guests["maria.gonzalez@mailbox.example"]})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["role"] == "guest"
        token = r.json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        _until_signed_in(c)
        guest_sent = c.get("/messages", params={"folder": "sent"},
                           headers={"Authorization": f"Bearer {token}"}).json()["items"]
    assert guest_sent
    every = {m["id"]: m for folder in mailbox.values() for m in folder}
    from_guest = [m for m in every.values() if m["from"]["email"] == "maria.gonzalez@mailbox.example"]
    assert from_guest
    reply = from_guest[0]
    assert reply["in_reply_to"] in every
    assert every[reply["in_reply_to"]]["from"]["email"] == stack.email
    assert reply["thread_id"] == every[reply["in_reply_to"]]["thread_id"]
    # The partner guest sent the big imaging series.
    assert any(m["from"]["email"].endswith("springfield-imaging.example") and m["attachments"]
               for m in every.values())


def test_notifications_carry_the_footer_and_two_disclaimers(stack):
    bodies = [(r.message["From"], r.message.get_body(("plain",)).get_content()) for r in stack.smtp.received]
    assert len(bodies) == stack.seed_stats["notifications"]
    assert all(FOOTER in " ".join(b.split()) for _, b in bodies)
    flat = [(sender, " ".join(b.split())) for sender, b in bodies]
    staff = [b for _, b in flat if DISCLAIMERS["staff"] in b]
    physicians = [b for _, b in flat if DISCLAIMERS["physicians"] in b]
    assert staff and physicians
    assert not any(DISCLAIMERS["staff"] in b and DISCLAIMERS["physicians"] in b for _, b in flat)
    from_guest = [b for sender, b in flat if "Maria Gonzalez" in sender]
    assert from_guest and not any(DISCLAIMERS["staff"] in b or DISCLAIMERS["physicians"] in b for b in from_guest)


def test_stop_leaves_nothing_running(stack, api):
    api.close()  # as the TUI does when it quits
    proc, port, sink_port, root = stack.process.proc, stack.port, stack.smtp.port, stack.root
    began = time.monotonic()
    stack.stop()
    assert time.monotonic() - began < demo_module.STOP_SECONDS + 5
    assert proc.poll() is not None
    assert not _port_open(port) and not _port_open(sink_port)
    assert not root.exists()
    assert not stack.running
    stack.stop()  # twice is fine


def test_demo_offers_a_guest_link_that_opens_in_a_browser(stack):
    link = stack.guest_link()
    assert link and link.startswith(stack.server + "/m/")
    r = httpx.get(link, verify=stack.ca_file)
    assert r.status_code == 200 and "A secure message for you" in r.text and "Open the message" in r.text


# ---------------------------------------------------------------- run_demo


def test_a_server_that_cannot_start_is_one_sentence(tmp_path, monkeypatch, capsys):
    from pen_server import devstack

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    ports = iter([busy.getsockname()[1]])
    real = devstack.free_port
    monkeypatch.setattr(devstack, "free_port", lambda: next(ports, None) or real())
    launched = []
    try:
        code = run_demo(lambda s: launched.append(s) or 0, messages=12, big_attachment_mb=1)
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert code == 1 and not launched
    lines = err.strip().splitlines()
    assert lines[0].startswith("Starting a demo PEN on https://127.0.0.1:")
    assert lines[-1].startswith("penmail demo: The demo PEN server did not start") and lines[-1].endswith(".")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_launch_gets_the_stack_and_its_errors_are_one_sentence(monkeypatch, capsys):
    stopped = []
    monkeypatch.setattr(DemoStack, "start", lambda self: self)
    monkeypatch.setattr(DemoStack, "stop", lambda self: stopped.append(self))
    assert run_demo(lambda s: 3) == 3
    assert run_demo(lambda s: (_ for _ in ()).throw(RuntimeError("it broke\nbadly"))) == 1
    err = capsys.readouterr().err
    assert err == "penmail demo: the client stopped with an error: it broke badly\n"
    assert len(stopped) == 2


def test_demo_error_is_an_exception_with_a_sentence():
    assert issubclass(DemoError, Exception)
    assert demo_module.DEMO_EMAIL == "dr.ruiz@riverside.example"


SCRIPT = textwrap.dedent("""
    import json, sys, time
    from tui.demo import DemoStack, run_demo

    def launch(stack):
        print(json.dumps({"pid": stack.process.proc.pid, "port": stack.port, "smtp": stack.smtp.port,
                          "root": str(stack.root)}), flush=True)
        if sys.argv[1] == "exit":
            sys.exit(7)
        time.sleep(120)
        return 0

    if sys.argv[1] == "exit":
        # No run_demo, no stop(): atexit must clean up.
        stack = DemoStack(messages=12, big_attachment_mb=1).start()
        launch(stack)
    sys.exit(run_demo(launch, messages=12, big_attachment_mb=1))
""")


@pytest.mark.parametrize("how, code", [("sigterm", 128 + signal.SIGTERM), ("sigint", 130), ("exit", 7)])
def test_the_stack_stops_when_the_process_ends(tmp_path, how, code):
    script = tmp_path / "demo_child.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    child = subprocess.Popen([sys.executable, str(script), how], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        info = json.loads(line)
        assert _pid_alive(info["pid"]) and _port_open(info["port"])
        if how != "exit":
            child.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        assert child.wait(60) == code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = child.stderr.read()
    assert "Traceback" not in err, err
    assert not _pid_alive(info["pid"])
    assert not _port_open(info["port"]) and not _port_open(info["smtp"])
    assert not Path(info["root"]).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["demo_child.py"]
