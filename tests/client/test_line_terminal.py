"""Line mode in a real terminal (tmux): what only a terminal shows, such as Ctrl-C at a
prompt. Without tmux the tests skip with one line; under PEN_REQUIRE_TOOLS=1 (CI) they fail."""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.client.test_key_bursts_tmux import REPO, tmux, wait_for_pane  # noqa: F401 (fixture)


def start_login(tmux, folder, *args: str) -> None:  # noqa: F811
    config = folder / "config.toml"
    env = {"PENMAIL_CONFIG": str(config), "PENMAIL_STATE_DIR": str(folder / "state"),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "PYTHONPATH": str(REPO), "TERM": "xterm"}
    command = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "tui.cli", "login",
                          *args])
    # The exit code stays on the screen after penmail ends; the shell outlives the Ctrl-C (a
    # trap, unlike an ignored signal, is not inherited by penmail).
    tmux("new-session", "-d", "-s", "pen", "-x", "100", "-y", "20", "-c", str(REPO),
         f"sh -c {shlex.quote('trap : INT; ' + command + '; echo EXIT=$?; sleep 60')}")


@pytest.mark.parametrize("prompt", ["address", "password"])
def test_ctrl_c_at_a_login_prompt_stops_at_once(pen, tmp_path, tmux, prompt):  # noqa: F811
    """^C at the address prompt used to show and wait for Enter (the next line became the
    address), and at the password prompt to stop only after Enter."""
    if prompt == "address":
        start_login(tmux, tmp_path)
        wait_for_pane(tmux, lambda p: "The PEN's address" in p, "the address prompt")
    else:
        start_login(tmux, tmp_path, "--server", pen.process.url, "--ca-file", str(pen.ca_file),
                    "--email", "cat@abc.example")
        wait_for_pane(tmux, lambda p: "Password for cat@abc.example" in p, "the password prompt")
    tmux("send-keys", "-t", "pen", "C-c")
    pane = wait_for_pane(tmux, lambda p: "EXIT=" in p, "penmail to stop", timeout=10)
    assert "EXIT=130" in pane, pane
    lines = [line for line in pane.splitlines() if line.strip()]
    assert lines[-2].strip() == "Stopped.", pane  # one line, of its own
    assert not (tmp_path / "config.toml").exists()
