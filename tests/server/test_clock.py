"""PEN_CLOCK and PEN_CLOCK_RATE: read when pen-server starts (pen_server.cli.main), not when
pen_server.models is imported; a wrong value is one sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from pen_server import models
from pen_server.clock import Clock, set_clock
from pen_server.settings import SettingsError, clock_from_environment

FIXED = {"PEN_CLOCK": "2020-01-15T09:30:00Z", "PEN_CLOCK_RATE": "0.001"}


def test_the_clock_from_the_environment_runs_from_its_start_at_its_rate():
    assert clock_from_environment({}).start is None
    try:
        set_clock(clock_from_environment(FIXED))
        now = models.utcnow()
        start = datetime(2020, 1, 15, 9, 30, tzinfo=UTC)
        assert start <= now < start + timedelta(seconds=1)
        assert models.utcnow() >= now
    finally:
        set_clock(Clock())
    assert models.utcnow().year > 2020


@pytest.mark.parametrize(("env", "sentence"), [
    ({"PEN_CLOCK": "yesterday"}, "PEN_CLOCK must be an RFC 3339 time such as 2020-01-15T09:30:00Z, not 'yesterday'."),
    ({**FIXED, "PEN_CLOCK_RATE": "fast"}, "The setting PEN_CLOCK_RATE must be a number, not 'fast'."),
    ({**FIXED, "PEN_CLOCK_RATE": "0"}, "The setting PEN_CLOCK_RATE must be more than 0."),
])
def test_a_wrong_clock_is_one_sentence(env, sentence):
    with pytest.raises(SettingsError) as info:
        clock_from_environment(env)
    assert str(info.value) == sentence


def test_importing_the_models_does_not_read_the_clock_but_the_command_does(tmp_path):
    # `pen-server run` on a folder without a PEN fails after the start, where the clock is set.
    probe = ("import sys; from pen_server import cli, models; before = models.utcnow().year; "
             "code = cli.main(['run', '--data', sys.argv[1]]); print(code, before, models.utcnow().year)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], env={**os.environ, **FIXED},
                          capture_output=True, text=True, timeout=60)
    code, before, after = map(int, done.stdout.split())
    assert code == 1 and "There is no pen-server.toml" in done.stderr
    assert before > 2020 and after == 2020
    wrong = subprocess.run([sys.executable, "-m", "pen_server", "run", "--data", str(tmp_path)],
                           env={**os.environ, "PEN_CLOCK": "yesterday"}, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1
    assert wrong.stderr == ("pen-server: PEN_CLOCK must be an RFC 3339 time such as 2020-01-15T09:30:00Z, "
                            "not 'yesterday'.\n")
