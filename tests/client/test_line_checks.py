"""Two small refusals of line mode, as the real command against the real PEN: an empty
message text from standard input (`send </dev/null`) unless --allow-empty, and a settings
file that names a server but no e-mail address (or the reverse) names the missing key."""

from __future__ import annotations

import time

import pytest

from tests.client.test_line_mode import Line, subject


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


def test_an_empty_text_is_refused_unless_allow_empty(line, pen):
    subj = subject("empty")
    for stdin in ("", "  \n\n"):
        done = line("send", "--to", "bob@abc.example", "--subject", subj, stdin=stdin)
        assert done.code == 2, done
        assert "Standard input had no text, so nothing was sent" in done.one_sentence()
        assert "--allow-empty" in done.err and done.out == ""
    drafts = line.tmp / "state-ann" / "drafts"
    assert not drafts.exists() or list(drafts.glob("*.json")) == []
    done = line("send", "--json", "--to", "bob@abc.example", "--subject", subj, "--allow-empty", stdin="")
    assert done.code == 0, done.err
    assert done.json()["subject"] == subj
    deadline = time.monotonic() + 10
    while not pen.mails_to("bob@abc.example", subj) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pen.mails_to("bob@abc.example", subj)) == 1  # the allowed one only


def test_a_settings_file_without_email_or_server_names_the_missing_key(line, pen):
    no_email = line.tmp / "no-email.toml"
    no_email.write_text(f'server = "{pen.process.url}"\nca_file = "{pen.ca_file}"\n')
    for command in ("list", "whoami", "logout", "intercept"):
        args = (command, "--stdin") if command == "intercept" else (command,)
        done = line(*args, config=no_email)
        assert done.code == 3, (command, done)
        sentence = done.one_sentence()
        assert f"In {no_email}, server is set but email is missing" in sentence, sentence
        assert "No PEN is set up yet" not in sentence and "not set up" not in sentence
    no_server = line.tmp / "no-server.toml"
    no_server.write_text('email = "ann@abc.example"\n')
    done = line("list", config=no_server)
    assert done.code == 3 and f"In {no_server}, email is set but server is missing" in done.one_sentence()
    done = line("list", config=line.tmp / "missing.toml")  # nothing at all: still the first-run advice
    assert done.code == 3 and "No PEN is set up yet; run `penmail login` first." in done.one_sentence()
