"""tui.demo: `penmail demo` starts a real PEN with a clinic's mail, seeded through the API,
and leaves nothing behind when it stops (normally, at exit, on SIGTERM or SIGINT)."""

from __future__ import annotations

import hashlib
import json
import os
import re
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
        yield c


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


def test_demo_offers_a_guest_link_that_opens_in_a_browser(stack):
    link = stack.guest_link()
    assert link and link.startswith(stack.server + "/m/")
    r = httpx.get(link, verify=stack.ca_file)
    assert r.status_code == 200 and "A secure message for you" in r.text and "Open the message" in r.text


# ---------------------------------------------------------------- prepared data


def _inbox(stack) -> list[dict]:
    with httpx.Client(base_url=stack.server + "/api/v1", verify=stack.ca_file, timeout=30) as c:
        r = c.post("/auth/login", json={"email": stack.email, "password": stack.password})
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return c.get("/messages", params={"folder": "inbox", "limit": 200}).json()["items"]


def _stamp(m: dict) -> datetime:
    return datetime.fromisoformat(m["sent_at"].replace("Z", "+00:00"))


def _stops_cleanly(stack, api: httpx.Client) -> None:
    """stop() ends the server, the sink and the folder, in bounded time; twice is fine."""
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


def test_a_second_start_copies_the_prepared_pen_to_a_new_port_with_its_dates_moved_to_today(tmp_path):
    cache = tmp_path / "cache"
    first = DemoStack(messages=40, big_attachment_mb=1, cache_dir=cache)
    began = time.monotonic()
    try:
        first.start()
        seeded_in = time.monotonic() - began
        assert first.prepared_from is None
        before, stats, first_port, first_link = _inbox(first), first.seed_stats, first.port, first.guest_link()
        assert first_link
    finally:
        first.stop()
    [entry] = [p for p in cache.iterdir()]
    # Prepared three days ago: every date comes forward by three days.
    meta_file = entry / "demo.json"
    meta = json.loads(meta_file.read_text())
    meta["prepared_at"] -= 3 * 86400
    meta_file.write_text(json.dumps(meta))

    second = DemoStack(messages=40, big_attachment_mb=1, cache_dir=cache)
    began = time.monotonic()
    try:
        second.start()
        took = time.monotonic() - began
        assert second.prepared_from == entry and second.port != first_port
        assert took < seeded_in, (took, seeded_in)
        after = _inbox(second)
        assert [(m["subject"], m["from"]["email"], m["unread"]) for m in after] == \
               [(m["subject"], m["from"]["email"], m["unread"]) for m in before]
        for old, new in zip(before, after):
            moved = (_stamp(new) - _stamp(old)).total_seconds()
            assert 3 * 86400 - 5 < moved < 3 * 86400 + 120, moved
        assert second.seed_stats["messages"] == stats["messages"] and second.guests == first.guests
        # The guest's link names the new port and opens; so do links of new notifications.
        link = second.guest_link()
        assert link == second.server + first_link.removeprefix(first.server)
        assert httpx.get(link, verify=second.ca_file).status_code == 200
        c = httpx.Client(base_url=second.server + "/api/v1", verify=second.ca_file, timeout=30)
        r = c.post("/auth/login", json={"email": second.email, "password": second.password})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        sent = c.post("/messages", json={"to": [{"email": "someone.new@elsewhere.example"}],
                                         "subject": "After the copy", "body_text": "Hello."},
                      headers={"Idempotency-Key": "after-the-copy"})
        assert sent.status_code == 201, sent.text
        [mail] = second.smtp.handler.wait_for(1)
        assert second.server + "/m/" in mail.message.get_body(("plain",)).get_content()
        assert "is whole" in _audit_verified(second)  # the dates moved, the chain hashed again
        _stops_cleanly(second, c)
    finally:
        second.stop()
    assert entry.is_dir()


# ---------------------------------------------------------------- run_demo


def test_a_server_that_cannot_start_is_one_sentence(tmp_path, monkeypatch, capsys):
    import pen_devstack as devstack

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
    monkeypatch.setattr(DemoStack, "start", lambda self, wait=True: self)
    monkeypatch.setattr(DemoStack, "stop", lambda self: stopped.append(self))
    assert run_demo(lambda s: 3) == 3
    assert run_demo(lambda s: (_ for _ in ()).throw(RuntimeError("it broke\nbadly"))) == 1
    err = capsys.readouterr().err
    assert err == "penmail demo: the client stopped with an error: it broke badly\n"
    assert len(stopped) == 2


def test_a_stopped_stack_refuses_to_start_again_in_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stack = DemoStack(messages=12, big_attachment_mb=1)
    stack.stop()
    with pytest.raises(DemoError) as caught:
        stack.start()
    assert str(caught.value) == "This demo stack has been stopped; start a new one."
    assert stack.process is None and list(tmp_path.iterdir()) == []


SCRIPT = textwrap.dedent("""
    import json, sys, time
    from tui.demo import DemoStack, run_demo

    OPTIONS = {"messages": 12, "big_attachment_mb": 1, "cache_dir": sys.argv[2]}

    def launch(stack):
        stack.wait_ready()  # as the app does before it signs in
        print(json.dumps({"pid": stack.process.proc.pid, "port": stack.port, "smtp": stack.smtp.port,
                          "root": str(stack.root)}), flush=True)
        if sys.argv[1] == "exit":
            sys.exit(7)
        time.sleep(120)
        return 0

    if sys.argv[1] == "exit":
        # No run_demo, no stop(): atexit must clean up.
        stack = DemoStack(**OPTIONS).start()
        launch(stack)
    sys.exit(run_demo(launch, **OPTIONS))
""")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A cache folder with SCRIPT's demo prepared once: each child copies it, as a second
    `penmail demo` does, instead of seeding twelve messages through the API again (what
    these tests look at is the stop, however the data was made)."""
    cache = tmp_path_factory.mktemp("demo-cache")
    DemoStack(messages=12, big_attachment_mb=1, cache_dir=cache).start().stop()
    return cache


@pytest.mark.parametrize("how, code", [("sigterm", 128 + signal.SIGTERM), ("sighup", 128 + signal.SIGHUP),
                                       ("sigint", 130), ("exit", 7)])
def test_the_stack_stops_when_the_process_ends(tmp_path, prepared, how, code):
    script = tmp_path / "demo_child.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    child = subprocess.Popen([sys.executable, str(script), how, str(prepared)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        info = json.loads(line)
        assert _pid_alive(info["pid"]) and _port_open(info["port"])
        if how != "exit":  # sighup: the terminal the demo ran in was closed
            child.send_signal({"sigterm": signal.SIGTERM, "sighup": signal.SIGHUP, "sigint": signal.SIGINT}[how])
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


def test_a_later_start_removes_what_a_killed_demo_left(tmp_path, prepared):
    """kill -9 leaves the demo's folder (with the CA's private key) and its PEN server; the
    next demo's start removes both, and leaves a running demo's folder alone."""
    from tui.demo import MARKER, remove_left_behind

    script = tmp_path / "demo_child.py"
    script.write_text(SCRIPT)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(temp))
    child = subprocess.Popen([sys.executable, str(script), "sleep", str(prepared)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline() or "{}")
        assert info, child.stderr.read()
        assert remove_left_behind(temp) == []  # alive: left alone
        child.kill()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    root = Path(info["root"])
    assert root.exists() and (root / MARKER).is_file() and _pid_alive(info["pid"])  # what -9 leaves
    assert remove_left_behind(temp) == [root]
    assert not root.exists()
    deadline = time.monotonic() + 20
    while _pid_alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(info["pid"]), "the orphaned PEN server still runs"


async def test_the_sign_in_screen_after_sign_out_shows_the_demo_password(stack, tmp_path, monkeypatch):
    """`L` in the demo: the password printed before the full screen is on the sign-in screen,
    and it is the one that signs in (as `penmail demo` starts the TUI, tui/cli.py)."""
    from tests.tui_helpers import at_mailbox, rendered, wait_for
    from tui.app import PenmailApp
    from tui.config import Config
    from tui.demo import sign_in_hint
    from tui.screens.signin import SignInScreen

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    config = Config(server=stack.server, email=stack.email, ca_file=Path(stack.ca_file), download_dir=tmp_path)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": stack.password}, use_keyring=False,
                     sign_in_hint=sign_in_hint(stack.email, stack.password))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen) and app.focused is not None)
        hint = app.screen.query_one("#signin-hint").render().plain
        assert f"with the password {stack.password}" in hint and stack.email in hint
        assert "Demo PEN" in rendered(app)[0]
        shown = hint.split("with the password ", 1)[1].split(" ", 1)[0]
        assert app.focused.id == "password"
        await pilot.press(*shown, "enter")
        await wait_for(pilot, lambda: at_mailbox(app))


async def test_the_guest_link_is_in_the_tui_while_the_demo_runs(stack, tmp_path, monkeypatch):
    """What was printed before the full screen covered it: ctrl+g (a key, a help line and a
    palette entry) shows it and copies the link (OSC 52), N's history has it from the start,
    and the sign-in hint names the key. Outside the demo there is no such entry."""
    from tests.tui_helpers import at_mailbox, rendered, wait_for
    from tui.app import PenmailApp
    from tui.config import Config
    from tui.demo import guest_link_sentence
    from tui.screens.notices import NoticesScreen

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    sentence = guest_link_sentence(stack)
    link = stack.guest_link()
    assert sentence and link and link in sentence and stack.ca_file in sentence
    config = Config(server=stack.server, email=stack.email, ca_file=Path(stack.ca_file), download_dir=tmp_path)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": stack.password}, use_keyring=False, demo_link=sentence)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Show the demo's guest link" in titles
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.clipboard == link)
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        shown = re.sub(r"[\s▊▎]", "", rendered(app)[0])  # the link is wrapped at 80 columns, in a box
        assert link in shown and stack.ca_file in shown
        assert [n.title for n in app.notices].count("Demo") == 2  # at start, and ctrl+g

    plain = PenmailApp(config, env={"PENMAIL_PASSWORD": stack.password}, use_keyring=False)
    async with plain.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(plain))
        assert "Show the demo's guest link" not in [c.title for c in plain.get_system_commands(plain.screen)]
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert plain.clipboard == "" and len(plain.notices) == 0


# ---------------------------------------------------------------- the shipped data set (issue 23)


def _default_options() -> dict:
    from tui.demo import shipped as demo_shipped

    return demo_shipped.stack_options(DemoStack())


def test_the_shipped_data_set_is_current_and_holds_no_key():
    from tui.demo import shipped as demo_shipped

    assert demo_shipped.usable(_default_options()) is not None, (
        "tui/demo/dataset was made from other sources (tui/demo/data.py, tui/demo/__init__.py or the server's "
        "migrations): make it again with `python -m tui.demo.shipped build`, or the first `penmail demo` "
        "seeds through the API for a quarter of a minute")
    for path in demo_shipped.HERE.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY" not in text and "secret.key" not in text, path
    assert "INSERT INTO \"auth_tokens\"" not in (demo_shipped.HERE / demo_shipped.SQL).read_text(encoding="utf-8")
    # It goes into the wheel.
    import fnmatch
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tui"]
    for name in (demo_shipped.SQL, demo_shipped.META):
        assert any(fnmatch.fnmatch(f"demo/dataset/{name}", p) for p in patterns), name


def test_the_data_sets_tokens_are_the_servers():
    """demo_shipped hashes the notifications' link tokens again as the server derives them."""
    from pen_server import security
    from tui.demo import shipped as demo_shipped

    secret = os.urandom(32)
    assert demo_shipped._derived(secret, "invite", "abc") == security.derived_token(secret, "invite", "abc")
    assert demo_shipped._token_hash(secret, "abc") == security.token_hash(security.derived_token(secret, "invite",
                                                                                                 "abc"))
    assert demo_shipped.blob_key("ab" * 32) == __import__("pen_server.storage").storage.blob_key("ab" * 32)


def _audit_verified(stack) -> str:
    done = subprocess.run([sys.executable, "-m", "pen_server", "audit", "verify", "--data", str(stack.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _blobs_whole(stack) -> set[str]:
    """Every blob the database names is in the data folder with those very bytes."""
    import sqlite3

    from tui.demo import shipped as demo_shipped

    with sqlite3.connect(stack.data_dir / "pen.db") as conn:
        named = {sha for (sha,) in conn.execute("SELECT sha256 FROM blobs")}
    conn.close()
    for sha in named:
        data = (stack.data_dir / "blobs" / demo_shipped.blob_key(sha)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
    return named


def test_the_first_penmail_demo_starts_from_the_shipped_data_without_seeding(tmp_path, monkeypatch):
    """On a fresh cache folder the demo is the shipped data set made this machine's: no
    seeding through the API (the slow path), no `pen-server init`, no accounts added; its
    own secret key and CA; the guest link, the search index and the audit chain hold; the
    attachments' files come from a helper process, and the next start links them."""
    import pen_devstack

    def slow_path(*args, **kwargs):
        raise AssertionError("the first start went through the API seeding")

    monkeypatch.setattr(DemoStack, "_run_async", slow_path)  # runs _seed (whose source is in the digest)
    monkeypatch.setattr(pen_devstack, "init_pen", slow_path)
    monkeypatch.setattr(pen_devstack, "add_user", slow_path)
    from tui.demo import shipped as demo_shipped

    meta = demo_shipped.usable(_default_options())
    cache = tmp_path / "cache"
    first = DemoStack(cache_dir=cache)
    try:
        first.start()
        assert first.shipped and first.prepared_from is None
        assert first.seed_stats["messages"] == meta["seed_stats"]["messages"] == 300
        inbox = _inbox(first)
        assert len(inbox) == meta["seed_stats"]["demo_mailbox"]["inbox"]
        newest = max(_stamp(m) for m in inbox)
        assert (datetime.now(newest.tzinfo) - newest).total_seconds() < 3 * 86400  # moved to today
        link = first.guest_link()
        assert link and link.startswith(first.server + "/m/")
        assert httpx.get(link, verify=first.ca_file).status_code == 200
        with httpx.Client(base_url=first.server + "/api/v1", verify=first.ca_file, timeout=30) as c:
            r = c.post("/auth/login", json={"email": first.email, "password": first.password})
            c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            found = [c.get("/messages", params={"folder": f, "q": "Kim"}) for f in ("inbox", "archive", "sent")]
            assert all(r.status_code == 200 for r in found)
            assert sum(len(r.json()["items"]) for r in found) > 0  # the search index came along
        assert "is whole" in _audit_verified(first)
        assert first._blob_maker is not None and first._blob_maker.wait(timeout=120) == 0
        assert len(_blobs_whole(first)) == len(set(meta["blobs"]))
        first_ca = Path(first.ca_file).read_bytes()
        first_secret = (first.data_dir / "secret.key").read_text()
    finally:
        first.stop()

    second = DemoStack(cache_dir=cache)
    try:
        second.start()
        assert second.shipped and second._blob_maker is None  # the files are linked at once
        assert len(_blobs_whole(second)) == len(set(meta["blobs"]))
        assert Path(second.ca_file).read_bytes() != first_ca
        assert (second.data_dir / "secret.key").read_text() != first_secret
        assert httpx.get(second.guest_link(), verify=second.ca_file).status_code == 200
    finally:
        second.stop()


def test_without_a_current_data_set_the_demo_seeds_through_the_api(tmp_path, monkeypatch):
    from tui.demo import shipped as demo_shipped

    monkeypatch.setattr(demo_shipped, "digest", lambda: "another")
    stack = DemoStack(messages=12, big_attachment_mb=1, cache_dir=tmp_path / "cache")
    try:
        stack.start()
        assert not stack.shipped and stack.seed_stats["seed_seconds"] > 0
    finally:
        stack.stop()


def test_the_client_starts_while_the_demos_server_is_starting(tmp_path, monkeypatch):
    """run_demo hands the stack to the client before the server answers (its first frame
    waits on no network); the client waits with wait_ready, and the attachments' helper
    process starts only once the server is up."""
    import threading

    import pen_devstack
    from tui.demo import shipped as demo_shipped

    assert demo_shipped.usable(_default_options()) is not None  # else the API seeding waits for the server
    gate = threading.Event()
    real_start = pen_devstack.PenProcess.start

    def held_start(self, *args, **kwargs):
        assert gate.wait(30)
        return real_start(self, *args, **kwargs)

    monkeypatch.setattr(pen_devstack.PenProcess, "start", held_start)
    seen = {}

    def launch(stack) -> int:
        seen["helper before the server"] = stack._blob_maker
        seen["ca"] = Path(stack.ca_file).is_file() and stack.guest_link() is not None
        gate.set()
        stack.wait_ready()
        seen["health"] = httpx.get(stack.server + "/api/v1/health", verify=stack.ca_file).status_code
        seen["helper"] = stack._blob_maker is not None
        return 0

    assert run_demo(launch, cache_dir=tmp_path / "cache") == 0
    assert seen == {"helper before the server": None, "ca": True, "health": 200, "helper": True}


def test_a_server_that_fails_while_the_client_waits_is_one_sentence(tmp_path, monkeypatch, capsys):
    import pen_devstack

    def failing_start(self, *args, **kwargs):
        raise RuntimeError("pen-server exited with 1: Traceback...\nOSError: the port is taken.")

    monkeypatch.setattr(pen_devstack.PenProcess, "start", failing_start)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def launch(stack) -> int:
        with pytest.raises(DemoError):
            stack.wait_ready()
        return 1  # as the app does (it ends)

    assert run_demo(launch, cache_dir=tmp_path / "cache") == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == "penmail demo: The demo PEN server did not start (OSError: the port is taken)."
    assert "Traceback (most recent" not in err
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_the_app_ends_when_the_server_it_waits_for_does_not_start(tmp_path, monkeypatch):
    from tests.tui_helpers import wait_for
    from tui.app import PenmailApp
    from tui.config import Config

    def not_started() -> None:
        raise DemoError("The demo PEN server did not start (no reason).")

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    config = Config(server="https://127.0.0.1:9", email="dr.ruiz@riverside.example", download_dir=tmp_path)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": "x"}, use_keyring=False, wait_for_server=not_started)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
