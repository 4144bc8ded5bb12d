"""penmail in a real terminal (tmux) against the test PEN: a whole string sent in one
`send-keys` call, as SSH, a paste or a macro delivers it, lands where it was typed for.
Without tmux the test skips with one line; under PEN_REQUIRE_TOOLS=1 (CI) it fails."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail("tmux is missing but PEN_REQUIRE_TOOLS=1: install Debian's tmux.")
        pytest.skip("tmux is missing: install it to run penmail in a real terminal.")
    socket = f"penmail-test-{uuid.uuid4().hex[:8]}"  # a tmux server of this test's own

    def run(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    yield run
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)


def wait_for_pane(tmux, condition, what: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pane = tmux("capture-pane", "-p", "-t", "pen")
        if condition(pane):
            return pane
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{pane}")
        time.sleep(0.1)


def cursor_line(tmux, pane: str) -> str:
    y = int(tmux("display-message", "-p", "-t", "pen", "#{cursor_y}").strip())
    return pane.splitlines()[y]


def start_penmail(tmux, pen, folder: Path) -> None:
    """penmail, signed in as Ann by the password in the environment, in a 100x30 tmux pane."""
    config = folder / "config.toml"
    config.write_text(f'server = "{pen.process.url}"\nca_file = "{pen.ca_file}"\nemail = "ann@abc.example"\n',
                      encoding="utf-8")
    env = {"PENMAIL_CONFIG": str(config), "PENMAIL_PASSWORD": PASSWORD, "PENMAIL_STATE_DIR": str(folder / "state"),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    command = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "tui.cli"])
    tmux("new-session", "-d", "-s", "pen", "-x", "100", "-y", "30", "-c", str(REPO), command)


def test_whole_strings_in_one_send_keys_land_in_their_fields(pen, send, tmp_path, tmux):
    subject = f"Terminal burst {uuid.uuid4().hex[:6]}"
    send("bob", ["ann"], subject=subject, body="x")
    start_penmail(tmux, pen, tmp_path)
    wait_for_pane(tmux, lambda p: subject in p, "the inbox")

    tmux("send-keys", "-t", "pen", "-l", "/Kim")  # one call, one burst
    pane = wait_for_pane(tmux, lambda p: "Kim" in p, "the search text")
    assert "Kim" in cursor_line(tmux, pane), pane  # in the search field, where the cursor is
    assert "Moved to" not in pane

    # Escape (the search closes) and c in one read reach penmail as alt+c: taken as both keys.
    tmux("send-keys", "-t", "pen", "Escape", "c", "bob@x.example", "Tab", "Tab", "Tab", "Subj", "Tab", "Body")
    pane = wait_for_pane(tmux, lambda p: "Body" in p and "Subj" in p, "the new message")
    lines = pane.splitlines()
    to = next(line for line in lines if "To:" in line)
    assert "bob@x.example" in to and "Subj" not in to and "Body" not in to, pane
    assert "Subj" in next(line for line in lines if "Subject:" in line), pane
    assert "Body" in cursor_line(tmux, pane), pane

    # F3 and a path in one burst: the path in its field, the cursor at the end of it.
    tmux("send-keys", "-t", "pen", "F3", "/tmp/agenda")
    pane = wait_for_pane(tmux, lambda p: "/tmp/agenda" in p, "the path")
    line = cursor_line(tmux, pane)
    assert "Attach:" in line and "/tmp/agenda" in line, pane
    x = int(tmux("display-message", "-p", "-t", "pen", "#{cursor_x}").strip())
    assert x == line.index("/tmp/agenda") + len("/tmp/agenda"), (x, line)


def test_the_drafts_dialog_at_sign_in_has_the_terminal_cursor(pen, tmp_path, tmux):
    from tui.drafts import Draft, DraftStore, account_key

    subject = f"Unfinished {uuid.uuid4().hex[:6]}"
    DraftStore(tmp_path / "state" / "drafts").save(
        Draft(to=["cat@abc.example"], subject=subject, account=account_key(pen.process.url, "ann@abc.example")))
    start_penmail(tmux, pen, tmp_path)
    pane = wait_for_pane(tmux, lambda p: "unsent draft" in p and subject in p, "the drafts dialog")
    deadline = time.monotonic() + 10
    while subject not in cursor_line(tmux, pane) and time.monotonic() < deadline:  # drawn a moment later
        time.sleep(0.1)
        pane = tmux("capture-pane", "-p", "-t", "pen")
    assert subject in cursor_line(tmux, pane), (cursor_line(tmux, pane), pane)


def test_escape_and_a_search_in_one_burst_from_the_reader(pen, send, tmp_path, tmux):
    """Escape then /from:bob and Enter in one write: the reader closes and the search runs
    (Textual's parser alone lost the Escape and the reader took f as forward)."""
    subject = f"Reader burst {uuid.uuid4().hex[:6]}"
    send("bob", ["ann"], subject=subject, body="x")
    start_penmail(tmux, pen, tmp_path)
    wait_for_pane(tmux, lambda p: subject in p, "the inbox")
    tmux("send-keys", "-t", "pen", "Enter")
    wait_for_pane(tmux, lambda p: "From:" in p and subject in p, "the reader")

    tmux("send-keys", "-t", "pen", "Escape", "/from:bob", "Enter")
    pane = wait_for_pane(tmux, lambda p: re.search(r"match(es)? from:bob", p.splitlines()[0]) or "Fwd:" in p,
                         "the search")
    assert re.search(r"match(es)? from:bob", pane.splitlines()[0]) and "Fwd:" not in pane, pane
