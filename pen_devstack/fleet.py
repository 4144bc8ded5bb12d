"""More than one process on one PEN, for tests and benchmarks: `pen-server worker` processes
beside the API processes of `PenProcess`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WorkerProcess:
    """`pen-server worker --data DIR`: delivery alone, with its own log file."""
    data: Path
    smtp_port: int | None = None
    env: dict = field(default_factory=dict)
    name: str = "worker"
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        env = dict(os.environ, **self.env)
        if self.smtp_port:
            env.update(PEN_SMTP_HOST="127.0.0.1", PEN_SMTP_PORT=str(self.smtp_port), PEN_SMTP_SECURITY="none")
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "pen_server", "worker", "--data", str(self.data)],
                                     env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pen-server worker exited with {self.proc.returncode}: {self.log_tail()}")
            if "pen-server worker delivering" in self.log_tail():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"pen-server worker did not start within {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        """kill -9: no clean stop, as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class EventReader:
    """GET /events read in a thread, each event kept as (id, kind, data); `ended` once the
    server ends the stream. `last_event_id` is sent as the Last-Event-ID header."""

    def __init__(self, api: str, ca_file: str | Path, token: str, last_event_id: str | None = None):
        import threading

        self.events: list[tuple[int | None, str, dict]] = []
        self.connected, self.ended = threading.Event(), threading.Event()
        self.error: Exception | None = None
        self._stop = False
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.thread = threading.Thread(target=self._read, args=(api, str(ca_file), headers), daemon=True)
        self.thread.start()
        if not self.connected.wait(20):
            raise RuntimeError(f"the event stream did not open: {self.error}")

    def _read(self, api: str, ca_file: str, headers: dict) -> None:
        import json

        import httpx

        try:
            with httpx.Client(base_url=api, verify=ca_file, timeout=httpx.Timeout(10, read=60)) as c, \
                    c.stream("GET", "/events", headers=headers) as r:
                self._response = r
                if r.status_code != 200:
                    raise RuntimeError(f"GET /events answered {r.status_code}: {r.read()!r}")
                event_id, kind, data = None, "message", []
                for line in r.iter_lines():
                    if self._stop:
                        return
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and (data or event_id is not None):
                        self.events.append((event_id, kind, json.loads("\n".join(data) or "{}")))
                        event_id, kind, data = None, "message", []
            self.ended.set()
        except Exception as exc:  # noqa: BLE001  (the test that waits shows it)
            self.error = exc
            self.ended.set()

    def close(self) -> None:
        """Stop reading (the connection closes with the thread's client)."""
        import socket

        self._stop = True
        response = getattr(self, "_response", None)
        if response is not None:  # shut the socket down (closing the TLS object from this thread is not safe)
            sock = response.extensions["network_stream"].get_extra_info("socket")
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)

    def wait_for(self, test, timeout: float = 30.0) -> list:
        """Waits until test(events) is true; returns the events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = list(self.events)
            if test(events):
                return events
            if self.ended.is_set() and not test(list(self.events)):
                break
            time.sleep(0.05)
        raise AssertionError(f"the stream did not get there within {timeout} s ({self.error}): {self.events[-5:]}")

    @property
    def last_id(self) -> int:
        return max((i for i, _, _ in self.events if i is not None), default=0)
