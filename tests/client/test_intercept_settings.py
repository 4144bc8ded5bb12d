"""tui.intercept.settings: the [imap] and [intercept] tables are strict, and every refusal is
one sentence naming the file and the key (the end-to-end runs are in test_intercept*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.config import ConfigError, load_config
from tui.intercept.settings import imap_settings, intercept_settings


def config_with(tmp_path: Path, body: str):
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return load_config(path, env={})


def test_defaults_and_paths_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = config_with(tmp_path, '[imap]\nhost = " imap.example.org "\nuser = "b"\nsecurity = "starttls"\n'
                                   'folders = [" INBOX ", "INBOX", "Lists"]\nca_file = "ca.pem"\n'
                                   '[intercept]\nsent_maildir = "Sent"\nsent_since = 7\n')
    imap = imap_settings(config)
    assert (imap.host, imap.user, imap.port, imap.security) == ("imap.example.org", "b", 143, "starttls")
    assert imap.folders == ("INBOX", "Lists") and imap.notification == "trash" and imap.trash is None
    assert imap.ca_file == tmp_path / "ca.pem"
    intercept = intercept_settings(config)
    assert intercept.sent is True and intercept.sent_since == 7.0 and intercept.sent_maildir == tmp_path / "Sent"
    assert intercept.attachment_limit == 25 << 20
    assert imap_settings(config_with(tmp_path, '[imap]\nhost = "h"\nuser = "u"\n')).port == 993


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "there is no [imap] table; add one with host, user and password_command"),
        ('[imap]\nhost = "h"', "imap.user is missing."),
        ('[imap]\nhost = ""\nuser = "u"', "imap.host must be a non-empty string without control characters."),
        ('[imap]\nhost = "h"\nuser = "u"\nsecurity = "ssl"',
         "imap.security must be \"tls\", \"starttls\" or \"none\", not 'ssl'."),
        ('[imap]\nhost = "imap.example.org"\nuser = "u"\nsecurity = "none"', "in the clear to imap.example.org"),
        ('[imap]\nhost = "h"\nuser = "u"\nport = true', "imap.port must be a port number from 1 to 65535."),
        ('[imap]\nhost = "h"\nuser = "u"\nport = 0', "imap.port must be a port number from 1 to 65535."),
        ('[imap]\nhost = "h"\nuser = "u"\nport = "993"', "imap.port must be a port number from 1 to 65535."),
        ('[imap]\nhost = "h"\nuser = "u"\nfolders = []',
         'imap.folders must be a list of folder names such as ["INBOX"].'),
        ('[imap]\nhost = "h"\nuser = "u"\npassword_command = "a \'b"', "imap.password_command cannot be split"),
        ('[imap]\nhost = "h"\nuser = "u"\nnotification = "keep"', "imap.notification must be \"trash\" or \"delete\""),
        ('[imap]\nhost = "h"\nuser = "u"\nca_file = "nope.pem"', "imap.ca_file names"),
        ('[imap]\nhots = "h"\nuser = "u"', "[imap] has 'hots', which penmail does not know (did you mean 'host'?"),
    ],
)
def test_imap_refusals(tmp_path: Path, body: str, expected: str) -> None:
    config = config_with(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        imap_settings(config)
    message = str(info.value)
    assert message.startswith(f"In {tmp_path / 'config.toml'}, ") and message.endswith(".") and expected in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("attachment_limit_mib = -1", "intercept.attachment_limit_mib must be a number of MiB from 0 to 10240."),
        ("attachment_limit_mib = true", "intercept.attachment_limit_mib must be a number of MiB from 0 to 10240."),
        ('sent = "yes"', "intercept.sent must be true or false (without quotes)."),
        ("sent_since = 36501", "intercept.sent_since must be a number of days from 0 to 36500."),
        ("sent_maildir = 3", "intercept.sent_maildir must be the path of a Maildir folder."),
        ('sent_mildir = "m"', "[intercept] has 'sent_mildir', which penmail does not know (did you mean"),
    ],
)
def test_intercept_refusals(tmp_path: Path, body: str, expected: str) -> None:
    config = config_with(tmp_path, f"[intercept]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        intercept_settings(config)
    assert expected in str(info.value)
