"""GET /metrics against the real PEN over TLS, parsed with prometheus_client's own parser. On
PostgreSQL two API processes (`run --workers 2`) and a separate `pen-server worker`, on SQLite
one API process and a worker beside it: whichever process answers the scrape, the counts are
exactly what the test caused, in every process (requests spread over both API processes,
notifications delivered by the worker, a bounce piped through a `pen-server bounce` that has
ended). Only an administrator's token opens it where [metrics] allow does not name the
caller; no label holds an address or an id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pen_devstack.fleet import EventReader, WorkerProcess
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, Pen, make_pen

RECIPIENTS = ["m1@metrics.example", "m2@metrics.example", "m3@metrics.example"]
GETS = 12


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, db_smtp, database):
    url = database()
    process = make_pen(tmp_path_factory.mktemp("metrics-pen"), db_smtp, env={"PEN_DELIVERY_IN_API": "0"},
                       database_url=url)
    config = process.data / "pen-server.toml"
    # Loopback is not allowed here: the scrapes below need an administrator's token.
    config.write_text(config.read_text() + '\n[metrics]\nallow = ["192.0.2.0/24"]\n')
    if url:
        process.args = ("--workers", "2")
    process.start()
    worker = WorkerProcess(process.data, smtp_port=db_smtp.port, env=process.env).start()
    yield Pen(process, db_smtp), worker
    worker.stop(TEARDOWN_STOP_SECONDS)
    process.stop(2)


Samples = dict[tuple[str, frozenset], float]


def scrape(pen: Pen, token: str | None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(pen.process.url + "/metrics", headers=headers, verify=pen.ca_file, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_the_metrics_count_what_happened_in_every_process(fleet):
    pen, _worker = fleet
    admin = pen.login("admin")["access_token"]
    ann = pen.login("ann")["access_token"]
    before = scrape(pen, admin)

    # Refused: no token from an address [metrics] allow does not name, a member's token.
    assert httpx.get(pen.process.url + "/metrics", verify=pen.ca_file).status_code == 401
    refused = httpx.get(pen.process.url + "/metrics", headers={"Authorization": f"Bearer {ann}"},
                        verify=pen.ca_file)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    # Each request on a connection of its own, so that they spread over the API processes.
    for _ in range(GETS):
        with pen.client(ann) as c:
            assert c.get("/messages").status_code == 200
    for _ in range(3):
        with pen.client() as c:
            assert c.post("/auth/login", json={"email": USERS["cat"][0], "password": "wrong " + PASSWORD}
                          ).status_code == 401
    subject = f"Metrics {uuid.uuid4().hex[:6]}"
    with pen.client(ann) as c:
        sent = c.post("/messages", json={"to": [{"email": e} for e in RECIPIENTS], "subject": subject,
                                         "body_text": "x"}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert sent.status_code == 201, sent.text
        deadline = time.monotonic() + 30
        while {n["status"] for n in c.get(f"/messages/{sent.json()['id']}/notifications").json()["items"]} != {"sent"}:
            assert time.monotonic() < deadline, "the worker did not deliver"
            time.sleep(0.1)
    # A bounce piped by an MTA to an address that is not one of this PEN's: counted by a
    # process that has ended by the time of the scrape.
    piped = subprocess.run([sys.executable, "-m", "pen_server", "bounce", "--data", str(pen.data), "--recipient",
                            "bounces+aaaa-bbbbbbbbbbbbbbbb@localhost"], input=b"Subject: hello\r\n\r\nhi\r\n",
                           capture_output=True, timeout=120, env=dict(os.environ, **pen.process.env))
    assert piped.returncode == 0, piped.stderr
    stream = EventReader(pen.api, pen.ca_file, ann)
    try:
        after = scrape(pen, admin)
    finally:
        stream.close()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"route": "/api/v1/messages", "method": "GET"}
    assert delta("pen_http_requests_total", **route, status="200") == GETS
    assert delta("pen_http_request_duration_seconds_count", **route) == GETS
    assert delta("pen_http_request_duration_seconds_bucket", **route, le="+Inf") == GETS
    assert delta("pen_http_requests_total", route="/api/v1/auth/login", method="POST", status="401") == 3
    assert delta("pen_signin_failures_total") == 3
    assert delta("pen_http_requests_total", route="/metrics", method="GET", status="401") == 1
    assert delta("pen_http_requests_total", route="/metrics", method="GET", status="403") == 1
    assert delta("pen_notifications", status="sent") == len(RECIPIENTS)
    assert value(after, "pen_outbox_notifications") == 0
    assert value(after, "pen_outbox_oldest_age_seconds") == 0
    assert delta("pen_bounces_total", kind="refused") == 1
    assert value(after, "pen_event_streams_open") == 1
    assert value(after, "pen_blocklist_unanswered") == 0
    # Labels: route templates and words, never an address, an id or a token.
    message_id = sent.json()["id"]
    for (_name, labels) in after:
        for _label, text in labels:
            assert "@" not in text and message_id not in text and ann not in text
    if pen.on_postgres:  # the requests were spread over both API processes, and the scrape added them up
        assert len(_processes_that_counted(pen, "pen_http_requests_total", route["route"])) == 2


def _processes_that_counted(pen: Pen, sample: str, route: str) -> set[str]:
    """The per-process files (counter_PID.db) in which `sample` of `route` is above 0."""
    from prometheus_client.mmap_dict import MmapedDict

    found = set()
    for file in (pen.data / "metrics").glob("counter_*.db"):
        for key, count, _ts, _pos in MmapedDict.read_all_values_from_file(str(file)):
            _metric, name, labels, _help = json.loads(key)
            if name == sample and labels.get("route") == route and count > 0:
                found.add(file.name)
    return found


def test_the_loopback_reads_the_metrics_without_a_token(pen):
    r = httpx.get(pen.process.url + "/metrics", verify=pen.ca_file, timeout=30)
    assert r.status_code == 200
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"pen_notifications", "pen_outbox_notifications", "pen_outbox_oldest_age_seconds",
            "pen_blocklist_unanswered", "pen_http_requests", "pen_http_request_duration_seconds",
            "pen_signin_failures", "pen_event_streams_open"} <= names
