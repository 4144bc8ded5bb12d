"""`pen-server init` and `run` as an administrator meets them, in real processes: the data
folder and every file in it private to its owner (the database's -wal and -shm, blobs and
keys too), a warning at `run` when it is not, every value checked before anything is
written, the settings file read back exactly, and the sending address (`--from`, or
pen@ the base URL's host, with a warning for an IP address) on the notifications that
reach the SMTP sink."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from pen_devstack import PenProcess, add_user, cli_in_process, free_port, init_pen
from pen_server.settings import load_settings
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS

REPO = Path(__file__).resolve().parents[2]


def pen_server(*args: str, env: dict | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """`pen-server ...` as an administrator runs it, without the test run's PEN_* settings:
    in this process (cli_in_process: the same main(), without a second of imports), or with
    `process` as its own process."""
    ours = {k: None for k in os.environ if k.startswith("PEN_")}
    if process:
        full_env = {k: v for k, v in os.environ.items() if k not in ours}
        full_env.update(PYTHONPATH=str(REPO), **(env or {}))
        done = subprocess.run([sys.executable, "-m", "pen_server", *args], capture_output=True, text=True,
                              env=full_env, cwd=REPO, timeout=120)
    else:
        done = cli_in_process(*args, env={**ours, **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    return done


def modes(root: Path) -> dict[str, int]:
    """Every entry under `root` (and `root` as "."), with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    for name, mode in modes(root).items():
        path = root / name
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{name} is {oct(mode)}, not {oct(expected)}"


def wait_mail(smtp, rcpt: str, timeout: float = 30.0):
    """The first notification the sink holds for `rcpt`, waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in list(smtp.received) if rcpt in m.rcpt_tos]
        if found:
            return found[0]
        smtp.handler.wait_for(len(smtp.received) + 1, timeout=0.5)
    raise AssertionError(f"no notification for {rcpt} reached the sink")


def test_init_and_run_with_traffic_keep_every_file_private_and_send_from_the_given_address(tmp_path, smtp):
    root = tmp_path / "pen"
    port = init_pen(root, from_address="notices@abc.example")
    assert_private(root)
    ann, bob = (f"files-{who}-{uuid.uuid4().hex[:8]}@abc.example" for who in ("ann", "bob"))
    add_user(root, ann, "Ann Files", PASSWORD)
    add_user(root, bob, "Bob Files", PASSWORD)
    process = PenProcess(root, port, smtp_port=smtp.port, env={"PEN_RETRY_BASE_SECONDS": "0.2"}).start()
    try:
        import httpx

        with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
            r = c.post("/auth/login", json={"email": ann, "password": PASSWORD})
            c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            data = os.urandom(70_000)
            att = c.post("/uploads", params={"filename": "scan.pdf"}, content=data).json()
            subject = f"Private {uuid.uuid4().hex[:8]}"
            r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                       json={"to": [{"email": bob}], "subject": subject, "body_text": "Hi.",
                             "attachments": [att["id"]]})
            assert r.status_code == 201, r.text
        mail = wait_mail(smtp, bob)
        sender = mail.message["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == ("Ann Files", "notices@abc.example")
        # the envelope sender is the notification's own bounce address, on the same domain
        assert mail.mail_from.startswith("bounces+") and mail.mail_from.endswith("@abc.example")
        # While the server runs: the database's -wal and -shm, the blob, the log; all private.
        found = modes(root)
        assert {"pen.db", "pen.db-wal", "pen.db-shm", "secret.key", "pen-server.toml", "server.log",
                "tls/server.key", "tls/ca.pem"} <= set(found)
        assert any(name.startswith("blobs/") and name.endswith(att["sha256"]) for name in found)
        assert_private(root)
        assert "go-rwx" not in process.log_tail(200)
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)
    assert_private(root)


def test_run_warns_in_a_sentence_about_a_data_folder_others_can_read(tmp_path):
    root = tmp_path / "pen"
    port = init_pen(root)
    os.chmod(root, 0o755)
    os.chmod(root / "pen.db", 0o644)
    process = PenProcess(root, port).start()
    try:
        lines = [line for line in process.log_tail(200).splitlines() if line.startswith("pen-server: ")]
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)
    assert lines == [f"pen-server: warning: The data folder {root} can be read by other users of this machine "
                     f"(it holds messages, password hashes and keys); make it private with: chmod -R go-rwx {root}"]


def test_init_refuses_a_control_character_writing_nothing_then_a_proper_init_works(tmp_path):
    folder = tmp_path / "pen"
    done = pen_server("init", "--data", str(folder), "--name", "Bad\rName", "--base-url", "https://pen.abc.example",
                      process=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("pen-server: The PEN's name may hold no control characters (found one in 'Bad\\rName'); "
                           "nothing was written.\n")
    assert os.listdir(tmp_path) == []
    for args, says in ((["--name", "ABC", "--footer", "a\x1b[2Jb"], "footer may hold line breaks"),
                       (["--name", " "], "name must not be empty"),
                       (["--name", "ABC", "--base-url", "http://pen.abc.example"], "plain https://"),
                       (["--name", "ABC", "--from", "pen@abc.example\r\nBcc: x@evil.example"], "sending address"),
                       (["--name", "ABC", "--from", "Pen <pen@abc.example>"], "sending address")):
        if "--base-url" not in args:
            args = [*args, "--base-url", "https://pen.abc.example"]
        done = pen_server("init", "--data", str(folder), *args)
        assert done.returncode == 1 and says in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)
        assert os.listdir(tmp_path) == [], args
    # A failure half-way (here the database cannot be made) leaves nothing either.
    done = pen_server("init", "--data", str(folder), "--name", "ABC", "--base-url", "https://pen.abc.example",
                      env={"PEN_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/folder/pen.db"})
    assert done.returncode == 1 and done.stderr.startswith("pen-server: ") and done.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == []
    done = pen_server("init", "--data", str(folder), "--name", "ABC", "--base-url", "https://pen.abc.example")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # a domain: no warning
    assert load_settings(folder).smtp.from_address == "pen@pen.abc.example"
    assert sorted(os.listdir(tmp_path)) == ["pen"]
    assert_private(folder)
    # An existing empty folder (an administrator made it) is used; a non-empty one is not.
    (tmp_path / "empty").mkdir(mode=0o755)
    assert pen_server("init", "--data", str(tmp_path / "empty"), "--name", "E",
                      "--base-url", "https://pen.abc.example").returncode == 0
    assert_private(tmp_path / "empty")
    done = pen_server("init", "--data", str(tmp_path), "--name", "E", "--base-url", "https://pen.abc.example")
    assert done.returncode == 1 and "is not empty" in done.stderr


@pytest.mark.parametrize("name,footer", [
    ('He said "hi" \\ and left \\"', 'C:\\Users\\ann\\'),
    ("Clínica Ñandú 東京 🩺", "Line one\nLine two \"quoted\" \\n literally"),
    ("'''\"\"\" [pen] name = \"x\"", "[smtp]\nfrom_address = \"evil@evil.example\""),
])
def test_settings_read_back_exactly_for_any_accepted_name_and_footer(tmp_path, name, footer):
    folder = tmp_path / "pen"
    init_pen(folder, name=name, footer=footer, base_url="https://pen.abc.example", from_address="pen@abc.example")
    settings = load_settings(folder)
    assert (settings.name, settings.footer, settings.base_url) == (name, footer, "https://pen.abc.example")
    assert settings.smtp.from_address == "pen@abc.example"
    raw = tomllib.loads((folder / "pen-server.toml").read_text(encoding="utf-8"))
    assert set(raw) == {"pen", "smtp", "limits"} and raw["smtp"]["from_address"] == "pen@abc.example"


def test_the_sending_address_from_the_host_with_a_warning_for_an_ip_address(tmp_path):
    port = free_port()
    done = pen_server("init", "--data", str(tmp_path / "ip"), "--name", "Loop",
                      "--base-url", f"https://127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ("pen-server: warning: notifications will come from pen@127.0.0.1, and mail servers "
                           "treat mail from an IP address or from localhost as spam; for real mail run init with "
                           "--from pen@your-domain (or set from_address in [smtp] of pen-server.toml).\n")
    assert load_settings(tmp_path / "ip").smtp.from_address == "pen@127.0.0.1"
    done = pen_server("init", "--data", str(tmp_path / "given"), "--name", "Given", "--from", "Clinic@Bücher.TEST",
                      "--base-url", f"https://127.0.0.1:{port}")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert load_settings(tmp_path / "given").smtp.from_address == "Clinic@xn--bcher-kva.test"
    assert "sending from Clinic@xn--bcher-kva.test" in done.stdout
    done = pen_server("init", "--data", str(tmp_path / "local"), "--name", "L", "--from", "pen@printer.local",
                      "--base-url", "https://pen.abc.example")
    assert done.returncode == 1 and "special-use" in done.stderr and not (tmp_path / "local").exists()


def _need(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        message = f"This test needs Debian's {program} (apt-get install {program})"
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{message}; PEN_REQUIRE_TOOLS=1 makes its absence a failure")
        pytest.skip(message)
    return found


def test_the_certificate_init_makes_is_accepted_by_w3m_curl_and_python(tmp_path, smtp):
    """The links a loopback PEN prints (https://127.0.0.1:PORT/...) open with the PEN's CA
    in w3m, which matches only DNS-name entries, in curl and in Python; the certificate
    names localhost, 127.0.0.1 and ::1 (and the base URL's host) in the forms each checks,
    and is valid at most 825 days in all (Apple's limit; testssl rates more as MEDIUM)."""
    import ipaddress
    import ssl
    from datetime import timedelta

    import httpx
    from cryptography import x509

    w3m, curl = _need("w3m"), _need("curl")
    port = free_port()
    root = tmp_path / "pen"
    done = pen_server("init", "--data", str(root), "--name", "Loopback Clinic", "--base-url",
                      f"https://127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate((root / "tls" / "server.pem").read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=825)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {"localhost", "127.0.0.1", "[::1]"}
    assert set(names.get_values_for_type(x509.IPAddress)) >= {ipaddress.ip_address("127.0.0.1"),
                                                             ipaddress.ip_address("::1")}
    ca = str(root / "tls" / "ca.pem")
    process = PenProcess(root, port, smtp_port=smtp.port).start()
    try:
        for host in ("127.0.0.1", "localhost"):
            url = f"https://{host}:{port}/login"
            page = subprocess.run([w3m, "-o", "ssl_verify_server=1", "-o", f"ssl_ca_file={ca}", "-dump", url],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                                  env={**os.environ, "HOME": str(tmp_path)})
            assert "Loopback Clinic" in page.stdout and "Bad cert" not in page.stdout + page.stderr, page
            code = subprocess.run([curl, "--silent", "--show-error", "--cacert", ca, "--output", os.devnull,
                                   "--write-out", "%{http_code}", url], capture_output=True, text=True, timeout=60)
            assert code.stdout == "200", code.stderr
            assert httpx.get(url, verify=ssl.create_default_context(cafile=ca), timeout=30).status_code == 200
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)
    # A PEN under its own name carries that name too, as a DNS name (an IP address as both).
    for host, dns, ip in (("pen.abc.example", "pen.abc.example", None), ("192.0.2.7", "192.0.2.7", "192.0.2.7"),
                          ("[2001:db8::7]", "[2001:db8::7]", "2001:db8::7")):
        folder = tmp_path / f"named-{len(dns)}"
        done = pen_server("init", "--data", str(folder), "--name", "Named", "--base-url", f"https://{host}",
                          "--from", "pen@abc.example")
        assert done.returncode == 0, done.stderr
        names = x509.load_pem_x509_certificate((folder / "tls" / "server.pem").read_bytes()).extensions \
            .get_extension_for_class(x509.SubjectAlternativeName).value
        assert dns in names.get_values_for_type(x509.DNSName)
        if ip:
            assert ipaddress.ip_address(ip) in names.get_values_for_type(x509.IPAddress)
