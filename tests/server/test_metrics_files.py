"""The metrics files of processes that ended are folded into one archive file per kind: the
sums stay exactly the same, the files go, and a gauge of a process that ended no longer
counts. Processes here are real ones (a `python -c` each), as `pen-server bounce` from an
MTA's pipe is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pen_server import metrics
from pen_server.db import Database, migrate
from pen_server.settings import Settings

COUNT = """
import sys
from pathlib import Path
from pen_server import metrics
from pen_server.settings import Settings
assert metrics.setup(Settings(data_dir=Path(sys.argv[1])))
for _ in range(int(sys.argv[2])):
    metrics.bounce("permanent")
    metrics.request("/api/v1/messages", "GET", 200, 0.02)
metrics.streams_open(int(sys.argv[2]))
"""


def _count(data: Path, times: int) -> None:
    done = subprocess.run([sys.executable, "-c", COUNT, str(data), str(times)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def _others(folder: Path, kind: str) -> list[Path]:
    """The per-process files of `kind` of processes other than this one."""
    return [f for f in folder.glob(f"{kind}_[0-9]*.db") if f.name != f"{kind}_{os.getpid()}.db"]


def _scrape(data: Path) -> dict:
    settings = Settings(data_dir=data)
    migrate(f"sqlite:///{data / 'pen.db'}")
    db = Database(f"sqlite:///{data / 'pen.db'}")
    try:
        body, _type = metrics.exposition(db, settings)
    finally:
        db.dispose()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_files_of_ended_processes_fold_into_the_archive(tmp_path, monkeypatch):
    from prometheus_client import values

    # What setup() changes in this process is put back after the test.
    monkeypatch.setattr(metrics, "_m", None)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    _count(tmp_path, 3)
    _count(tmp_path, 4)
    folder = tmp_path / "metrics"
    assert len(list(folder.glob("counter_[0-9]*.db"))) == 2
    assert metrics.setup(Settings(data_dir=tmp_path))  # this process scrapes, as an API process does
    try:
        monkeypatch.setattr(metrics, "_last_compact", 0.0)
        before_fold = _scrape(tmp_path)
        assert not _others(folder, "counter"), "the ended processes' files are still there"
        assert not _others(folder, "histogram")
        assert {f.name for f in folder.glob("*_archive.db")} == {"counter_archive.db", "histogram_archive.db"}
        assert before_fold[("pen_bounces_total", (("kind", "permanent"),))] == 7
        route = (("method", "GET"), ("route", "/api/v1/messages"))
        assert before_fold[("pen_http_request_duration_seconds_count", route)] == 7
        assert before_fold[("pen_http_request_duration_seconds_bucket", tuple(sorted((*route, ("le", "0.025")))))] == 7
        assert before_fold[("pen_event_streams_open", ())] == 0  # those processes ended: their streams too
        # More from another process, folded into the same archive: the sums go on.
        _count(tmp_path, 5)
        metrics.compact(folder)
        after = _scrape(tmp_path)
        assert after[("pen_bounces_total", (("kind", "permanent"),))] == 12
        assert after[("pen_http_requests_total", (*route, ("status", "200")))] == 12
        assert not _others(folder, "counter")
    finally:
        monkeypatch.setattr(metrics, "_m", None)
