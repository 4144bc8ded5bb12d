"""A keyring backend that keeps its entries in a JSON file named by BENCH_KEYRING_FILE, so
that each penmail process of a benchmark starts signed in from a remembered refresh token,
as a person's penmail does with their desktop keyring. For benchmarks only."""

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1

    def _path(self) -> Path:
        return Path(os.environ["BENCH_KEYRING_FILE"])

    def _load(self) -> dict:
        try:
            return json.loads(self._path().read_text())
        except (OSError, ValueError):
            return {}

    def get_password(self, service, username):
        return self._load().get(f"{service}|{username}")

    def set_password(self, service, username, password):
        data = self._load()
        data[f"{service}|{username}"] = password
        tmp = self._path().with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._path())

    def delete_password(self, service, username):
        data = self._load()
        if data.pop(f"{service}|{username}", None) is None:
            raise PasswordDeleteError("not found")
        self._path().write_text(json.dumps(data))
