"""Metrics in Prometheus's text format (prometheus-client), for `GET /metrics`.

Two kinds, each counted where it is true whatever the number of processes:

- What happens in a process (requests by route and status with their latency, sign-in
  failures, bounces by kind, event streams open) is counted in prometheus-client's
  multiprocess mode: each process (each of `run --workers N`, a `pen-server bounce` from an
  MTA's pipe) writes its own memory-mapped files in `DIR/metrics/`, and a scrape adds up the
  files of every process of the data folder, living or dead. The files of processes that
  have ended are folded into one archive file per kind (`compact`), so that a PEN that has
  been restarted, or has taken a bounce through the pipe, a thousand times reads a handful
  of files, not thousands; counters therefore go on across restarts. Streams open count
  only living processes' files (`livesum`); a dead process's are removed.
- The PEN's state (notifications by status, the outbox's depth and oldest age, blocklist
  listings, suppressions) is read from the database at scrape time, so it is the same
  whichever process, host or `pen-server worker` changed it, and never counted twice.

Label values are bounded: a route is its template (`/api/v1/messages/{message_id}`), a
method one of the HTTP methods or OTHER, never an address or an id."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from pen_server.models import Base, BlocklistListing, BlocklistState, Message, Notification, utcnow
from pen_server.settings import DOMAIN_ZONE, Settings

log = logging.getLogger("pen_server.metrics")
DIR_NAME = "metrics"
LOCK_NAME = ".lock"
COMPACT_EVERY_SECONDS = 300.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = ("queued", "sending", "sent", "deferred", "failed", "bounced")  # always shown, 0 when none
WAITING = ("queued", "sending", "deferred")  # in the outbox
BOUNCE_KINDS = ("permanent", "delayed", "ignored", "refused")
_PROCESS_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")


@dataclass
class _Metrics:
    path: Path
    requests: Any
    latency: Any
    signin_failures: Any
    bounces: Any
    streams: Any


_m: _Metrics | None = None
_last_compact = 0.0


def directory(settings: Settings) -> Path:
    return settings.data_dir / DIR_NAME


def setup(settings: Settings) -> bool:
    """Count this process's metrics in the data folder's metrics directory (before forking,
    so children count in files of their own). False when [metrics] is off or the directory
    cannot be written (a bounce pipe run as another user): then nothing is counted here."""
    global _m
    if not settings.metrics.enabled:
        return False
    if _m is not None:
        return True
    path = directory(settings)
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        if not os.access(path, os.W_OK):
            return False
    except OSError:
        return False
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import Counter, Gauge, Histogram, values

    # Chosen here rather than by the variable at import: whichever module imported
    # prometheus_client first, the metrics made below live in this directory.
    values.ValueClass = values.MultiProcessValue()
    _m = _Metrics(
        path=path,
        requests=Counter("pen_http_requests", "HTTP requests answered, by route template, method and status.",
                         ["route", "method", "status"], registry=None),
        latency=Histogram("pen_http_request_duration_seconds",
                          "Time from a request's arrival to the end of its answer, by route template and method.",
                          ["route", "method"], registry=None),
        signin_failures=Counter("pen_signin_failures", "Sign-ins refused for a wrong e-mail address or password "
                                                       "(API and web pages).", registry=None),
        bounces=Counter("pen_bounces", "Mail that came back to a bounce address, by kind: permanent, delayed, "
                                       "ignored (not a bounce: an auto-reply), refused (not a bounce address of "
                                       "this PEN, or a forged one).", ["kind"], registry=None),
        streams=Gauge("pen_event_streams_open", "Event streams (GET /events) open now.", registry=None,
                      multiprocess_mode="livesum"),
    )
    _m.streams.set(0)
    return True


# -- counting (each a no-op where setup() was not called) ----------------------------------------

def request(route: str, method: str, status: int, seconds: float) -> None:
    m = _m
    if m is None:
        return
    method = method if method in METHODS else "OTHER"
    m.requests.labels(route, method, str(status or 0)).inc()
    m.latency.labels(route, method).observe(seconds)


def signin_failed() -> None:
    if _m is not None:
        _m.signin_failures.inc()


def bounce(kind: str) -> None:
    if _m is not None:
        _m.bounces.labels(kind if kind in BOUNCE_KINDS else "ignored").inc()


def streams_open(count: int) -> None:
    if _m is not None:
        _m.streams.set(count)


# -- the files of processes that ended -----------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path, exclusive: bool, wait: bool = True):
    """The directory's lock: shared while a scrape reads, exclusive while files are folded."""
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def compact(path: Path) -> int:
    """Fold the counter and histogram files of processes that ended into one archive file
    per kind, and remove their `livesum` gauge files; returns how many files went. Under the
    directory's exclusive lock, so a scrape never reads a value both in the archive and in
    the file it came from."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    removed = 0
    with _locked(path, exclusive=True, wait=False) as got:
        if not got:
            return 0  # another process is at it
        dead: dict[str, list[Path]] = {}
        for file in path.iterdir():
            match = _PROCESS_FILE.match(file.name)
            if match and not _alive(int(match.group(2))):
                dead.setdefault(match.group(1), []).append(file)
        for kind, files in dead.items():
            if kind.startswith("gauge_"):  # a gauge of a process that ended says nothing any more
                for file in files:
                    file.unlink(missing_ok=True)
                    removed += 1
                continue
            archive = path / f"{kind}_archive.db"
            merged = MultiProcessCollector.merge([str(f) for f in [*([archive] if archive.exists() else []), *files]],
                                                 accumulate=False)
            fresh = path / f"{kind}_archive.db.new"
            fresh.unlink(missing_ok=True)
            out = MmapedDict(str(fresh))
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_key(metric.name, sample.name, list(sample.labels), list(sample.labels.values()),
                                       metric.documentation)
                        out.write_value(key, sample.value, 0.0)
            finally:
                out.close()
            os.replace(fresh, archive)
            for file in files:
                file.unlink(missing_ok=True)
                removed += 1
    return removed


def _maybe_compact(path: Path) -> None:
    global _last_compact
    if time.monotonic() - _last_compact < COMPACT_EVERY_SECONDS:
        return
    _last_compact = time.monotonic()
    try:
        folded = compact(path)
        if folded:
            log.info("metrics: folded the files of %d ended process(es) into the archive", folded)
    except Exception:  # the scrape still answers with what the files say
        log.exception("folding the metrics files of ended processes failed")


# -- the scrape ----------------------------------------------------------------------------------

class _Database:
    """Gauges read from the database at each scrape."""

    def __init__(self, db, settings: Settings):
        self.db, self.settings = db, settings

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        n = Notification
        suppressions = Base.metadata.tables.get("suppressions")  # the suppression list, where the PEN has one
        with self.db.session() as session:
            by_status = {status: count for status, count in
                         session.execute(select(n.status, func.count()).group_by(n.status))}
            depth, oldest = session.execute(
                select(func.count(), func.min(Message.sent_at)).select_from(n)
                .join(Message, Message.id == n.message_id).where(n.status.in_(WAITING))).one()
            listed = {zone: count for zone, count in
                      session.execute(select(BlocklistListing.zone, func.count()).group_by(BlocklistListing.zone))}
            state = session.get(BlocklistState, 1)
            suppressed = (session.scalar(select(func.count()).select_from(suppressions))
                          if suppressions is not None else None)
        now = utcnow()
        family = GaugeMetricFamily("pen_notifications", "Notifications in each status now, PEN-wide.",
                                   labels=["status"])
        for status in sorted(set(STATUSES) | set(by_status)):
            family.add_metric([status], by_status.get(status, 0))
        yield family
        yield GaugeMetricFamily("pen_outbox_notifications", "Notifications waiting to be sent (queued, sending or "
                                                            "deferred).", value=depth or 0)
        if isinstance(oldest, datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        yield GaugeMetricFamily("pen_outbox_oldest_age_seconds", "How long ago the oldest message with a "
                                                                 "notification still waiting was sent; 0 when none "
                                                                 "waits.",
                                value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        family = GaugeMetricFamily("pen_blocklist_listings", "Sending addresses or domains listed now, by "
                                                             "blocklist zone.", labels=["zone"])
        zones = {z.removeprefix(DOMAIN_ZONE) for z in self.settings.deliverability.dnsbl_zones}
        for zone in sorted(zones | set(listed)):
            family.add_metric([zone], listed.get(zone, 0))
        yield family
        checked = state.checked_at if state is not None else None
        yield GaugeMetricFamily("pen_blocklist_unanswered", "Questions of the last blocklist check that got no "
                                                            "answer (the check is incomplete while above 0).",
                                value=len(state.unanswered or []) if checked else 0)
        if checked is not None:
            yield GaugeMetricFamily("pen_blocklist_last_check_timestamp_seconds", "When the last blocklist check "
                                                                                  "finished (Unix time).",
                                    value=checked.timestamp())
        if suppressed is not None:
            yield GaugeMetricFamily("pen_suppressions", "Addresses on the suppression list.", value=suppressed)


def exposition(db, settings: Settings, accept: str = "") -> tuple[bytes, str]:
    """The text of one scrape and its content type: the format the scraper's Accept header
    asks for (OpenMetrics, or the text format's 1.0.0), else the text format 0.0.4 that every
    Prometheus reads."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector

    encode, content_type = choose_encoder(accept)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Database(db, settings))
    m = _m
    if m is None:
        return encode(registry), content_type
    _maybe_compact(m.path)
    MultiProcessCollector(registry, str(m.path))
    with _locked(m.path, exclusive=False):
        return encode(registry), content_type
