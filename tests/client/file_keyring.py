"""A working keyring backend in a JSON file named by $PENMAIL_TEST_KEYRING, shared by the
test process and penmail subprocesses (PYTHON_KEYRING_BACKEND=tests.client.file_keyring.FileKeyring).
Each write replaces the file whole (os.replace), so a reader in another process never sees
half of one. Not a test module (no test_ prefix): subprocesses import it cheaply."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.errors
from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["PENMAIL_TEST_KEYRING"])

    def _load(self) -> dict:
        try:
            return json.loads(self._path().read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict) -> None:
        path = self._path()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def get_password(self, service, username):
        return self._load().get(f"{service} {username}")

    def set_password(self, service, username, password):
        data = self._load()
        data[f"{service} {username}"] = password
        self._save(data)

    def delete_password(self, service, username):
        data = self._load()
        if f"{service} {username}" not in data:
            raise keyring.errors.PasswordDeleteError("not found")
        del data[f"{service} {username}"]
        self._save(data)
