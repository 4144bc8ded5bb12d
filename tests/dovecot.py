"""A real IMAP server for tests and benches: Debian's Dovecot, started in a temporary
folder on a free loopback port with a static password (``ssl = no``, loopback only), and
stopped again.  ``dovecot_binary()`` is None where it is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pen_devstack import free_port

PASSWORD = "imap-secret-42"
HOW_TO_ENABLE = "Dovecot is not installed: `apt-get install -y dovecot-imapd` runs the IMAP tests."


def _running(pid: int) -> bool:
    """Dovecot's master runs as `pid`: not gone, not a zombie waiting for its parent (for
    a daemon, init, which in a container may reap it seconds later), and not another
    program that got the number of one that ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: alive as far as we can tell
    return "(dovecot)" in stat and stat.rsplit(") ", 1)[1][:1] != "Z"


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
    return found


class Dovecot:
    def __init__(self, root: Path, *, tls: bool = False, sent: str | None = None):
        """``tls``: also an implicit-TLS port (``tls_port``) and STARTTLS on the plain one,
        with a certificate for 127.0.0.1 from a CA of its own (``ca_file``).  ``sent``: a
        folder of that name marked ``\\Sent`` (RFC 6154), made for every user."""
        self.root = root
        self.tls = tls
        self.sent = sent
        self.tls_port = free_port() if tls else None
        self.ca_file = root / "ca.pem"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.conf = root / "dovecot.conf"
        self.store = root  # where the mail lives

    def start(self, timeout: float = 10.0) -> Dovecot:
        binary = dovecot_binary()
        assert binary, HOW_TO_ENABLE
        for sub in ("run", "state"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            # Dovecot runs no login or mail process as root: the mail belongs to nobody (in a
            # folder of its own under /tmp, which nobody can reach), the login processes to
            # Debian's dovenull/dovecot users.
            uid = gid = 65534
            users = "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
            if self.store == self.root:  # a restart keeps its mail
                self.store = Path(tempfile.mkdtemp(prefix="penmail-dovecot-"))
                self.store.chmod(0o711)
            for sub in ("mail", "home"):
                (self.store / sub).mkdir(exist_ok=True)
                os.chown(self.store / sub, uid, gid)
        else:
            uid, gid = os.getuid(), os.getgid()
            import pwd

            me = pwd.getpwuid(uid).pw_name
            users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
            for sub in ("mail", "home"):
                (self.store / sub).mkdir(exist_ok=True)
        ssl = "ssl = no\n"
        listeners = ""
        if self.tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            ca.cert_pem.write_to_path(str(self.ca_file))
            cert.private_key_pem.write_to_path(str(self.root / "key.pem"))
            cert.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
            ssl = f"ssl = yes\nssl_cert = <{self.root}/cert.pem\nssl_key = <{self.root}/key.pem\n"
            listeners = (f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n"
                         f"    ssl = yes\n  }}\n")
        sent = ""
        if self.sent:
            name = self.sent.replace("\\", "\\\\").replace('"', '\\"')
            sent = f'  mailbox "{name}" {{\n    special_use = \\Sent\n    auto = create\n  }}\n'
        self.conf.write_text(f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
{users}first_valid_uid = 1
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.store}/home/%u
}}
mail_location = maildir:{self.store}/mail/%u
namespace inbox {{
  inbox = yes
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
{sent}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
{listeners}}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
""")
        # Dovecot forks into the background; its output goes to a file, so nothing waits on a pipe.
        with open(self.root / "start.log", "wb") as log:
            subprocess.run([binary, "-c", str(self.conf)], check=True, stdin=subprocess.DEVNULL, stdout=log,
                           stderr=log, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not start: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """End the server and its processes at once (kill -9 to its process group: its mail
        goes with the folder), and remove the mail of a server that ran as root."""
        try:
            self._stop(signal.SIGKILL)
        finally:
            if self.store != self.root:
                shutil.rmtree(self.store, ignore_errors=True)

    def _stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: Dovecot's own stop (its master ends its processes, then exits about a
        second later); SIGKILL: the master's whole process group at once. Returns when the
        master has ended (a zombie that init has yet to reap has ended: its port is free)."""
        try:
            pid = int((self.root / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return
        if not _running(pid):
            return
        try:
            if how == signal.SIGKILL:
                os.killpg(pid, how)  # dovecot is a session leader: every process of its own
            else:
                os.kill(pid, how)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.02)

    def client(self, user: str):
        import imapclient

        c = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        c.login(user, PASSWORD)
        return c
