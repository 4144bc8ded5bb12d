"""pen-server.toml is checked against one typed model: a misspelt key or section stops the
server with one sentence naming the file, the section, the key and the nearest known name,
where it loaded silently before (issue 21: `[pen] nmae`, `[limits] max_recipent = 5`, a
section `[smtpp]`). Against the real server on both databases, and the sentences of the
reader alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pen_devstack import cli_in_process
from pen_server.settings import SettingsError, load_settings
from tests.conftest import make_pen

# (what the file gets, how, the sentence after "In FILE, ")
MISSPELT = [
    ("pen", 'nmae = "Clinic"', "[pen] has no setting 'nmae'; did you mean 'name'?"),
    ("limits", "max_recipent = 5", "[limits] has no setting 'max_recipent'; did you mean 'max_recipients'?"),
    (None, '[smtpp]\nhost = "mail.abc.example"', "there is no section [smtpp]; did you mean [smtp]?"),
]


def _misspell(config: Path, section: str | None, line: str) -> None:
    text = config.read_text(encoding="utf-8")
    if section is None:
        config.write_text(text + "\n" + line + "\n", encoding="utf-8")
    else:
        assert f"[{section}]\n" in text
        config.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1), encoding="utf-8")


def test_a_misspelt_setting_stops_the_server_with_its_sentence(tmp_path, db_smtp, database):
    process = make_pen(tmp_path / "pen", db_smtp, database_url=database())
    config = process.data / "pen-server.toml"
    good = config.read_text(encoding="utf-8")
    for i, (section, line, sentence) in enumerate(MISSPELT):
        _misspell(config, section, line)
        run = ["run", "--data", str(process.data), "--port", str(process.port)]
        if i == 0:  # `pen-server run` as its own process, exit code and all
            done = subprocess.run([sys.executable, "-m", "pen_server", *run], capture_output=True, text=True,
                                  timeout=120)
        else:  # the same main() in this process, without a second of imports
            done = cli_in_process(*run)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == f"pen-server: In {config}, {sentence}"
        assert "listening" not in done.stdout
        config.write_text(good, encoding="utf-8")
    # Every command reads the same file the same way, and the sentence names each mistake.
    for section, line, _ in MISSPELT:
        _misspell(config, section, line)
    done = subprocess.run([sys.executable, "-m", "pen_server", "user", "list", "--data", str(process.data)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"pen-server: In {config}, [pen] has no setting 'nmae' (did you mean 'name'?), [limits] has no setting "
        "'max_recipent' (did you mean 'max_recipients'?) and there is no section [smtpp] (did you mean [smtp]?).")
    # Put right, the same PEN starts and answers over TLS.
    config.write_text(good, encoding="utf-8")
    process.start()
    try:
        assert httpx.get(process.api + "/health", verify=str(process.ca_file), timeout=10).status_code == 200
    finally:
        process.stop(2)


def _sentence(tmp_path: Path, text: str) -> str:
    (tmp_path / "pen-server.toml").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, env={})
    return str(caught.value)


@pytest.mark.parametrize(("text", "sentence"), [
    ('name = "Clinic"\n', "In {file}, the setting 'name' stands outside any section; did you mean 'name' in [pen]?"),
    ("[pen.theme]\n", "In {file}, [pen] has no setting 'theme'; its settings are name, base_url, footer."),
    ("[colours]\nx = 1\n", "In {file}, there is no section [colours]; the sections are pen, database, limits, smtp, "
                           "delivery, events, log, bounces, storage, deliverability, metrics."),
    ("[limits]\nmax_recipients = 'lots'\n", "The setting limits.max_recipients must be a whole number, not 'lots'."),
    ("[limits]\nmax_recipients = 0\n", "The setting limits.max_recipients must be at least 1."),
    ("[limits]\nhead_timeout_seconds = 0\n", "The setting limits.head_timeout_seconds must be more than 0."),
    ("[limits]\nsignin_max_delay = 0.5\n", "The setting limits.signin_max_delay must be at least 1 second."),
    ("[limits]\ntrusted_proxy_addresses = ['proxy']\n",
     "The setting limits.trusted_proxy_addresses holds 'proxy', which is not an IP address or network."),
    ("[delivery]\nin_api = 'maybe'\n", "The setting delivery.in_api must be true or false, not 'maybe'."),
    ("[pen]\nname = 5\n", "The setting pen.name must be text (in quotes), not 5."),
    ("pen = 5\n", "The [pen] part of {file} must be a table."),
    ("[smtp]\nsecurity = 'ssl'\n", "The SMTP security must be one of starttls, tls or none, not 'ssl'."),
    ("[deliverability]\ndnsbl_zones = ['zen spamhaus']\n",
     "The setting deliverability.dnsbl_zones holds 'zen spamhaus', which is not a DNS zone (write a zone such as "
     "\"zen.spamhaus.org\", or \"domain:dbl.spamhaus.org\" for a zone that lists domains)."),
    ("[deliverability]\nresolver = 'dns.google'\n", "The setting deliverability.resolver must be a resolver's IP "
                                                    "address and port such as \"127.0.0.1:53\", not 'dns.google'."),
    ("[deliverability]\nsending_ips = ['198.51.100.300']\n",
     "The setting deliverability.sending_ips holds '198.51.100.300', which is not an IP address."),
    ("[metrics]\nallow = ['everyone']\n",
     "The setting metrics.allow holds 'everyone', which is not an IP address or network."),
    ("[log]\nformat = 'xml'\n", "The setting log.format must be \"text\" or \"json\", not 'xml'."),
])
def test_each_mistake_is_one_sentence(tmp_path, text, sentence):
    assert _sentence(tmp_path, text) == sentence.format(file=tmp_path / "pen-server.toml")


def test_the_new_sections_are_read(tmp_path):
    (tmp_path / "pen-server.toml").write_text(
        '[deliverability]\ndnsbl_zones = ["zen.spamhaus.org", "DOMAIN:dbl.spamhaus.org."]\ncheck_minutes = 15\n'
        'query_seconds = 2.5\nresolver = "::1"\nsending_ips = ["198.51.100.7"]\n[metrics]\nenabled = false\n'
        'allow = "10.0.0.0/8"\n'
        '[log]\nformat = "json"\n', encoding="utf-8")
    s = load_settings(tmp_path, env={})
    assert s.deliverability.dnsbl_zones == ["zen.spamhaus.org", "domain:dbl.spamhaus.org"]
    assert (s.deliverability.check_minutes, s.deliverability.resolver) == (15, "[::1]:53")
    assert s.deliverability.query_seconds == 2.5
    assert s.deliverability.sending_ips == ["198.51.100.7"]
    assert (s.metrics.enabled, s.metrics.allow, s.log_format) == (False, ["10.0.0.0/8"], "json")
    (tmp_path / "pen-server.toml").write_text("", encoding="utf-8")
    s = load_settings(tmp_path, env={})
    assert (s.deliverability.dnsbl_zones, s.deliverability.check_minutes, s.metrics.allow) == (
        [], 60.0, ["127.0.0.1", "::1"])
    assert s.deliverability.query_seconds == 5.0
