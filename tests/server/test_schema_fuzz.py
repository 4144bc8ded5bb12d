"""schemathesis, with every one of its checks, over the server's own OpenAPI document: the
document lists each status and error body the server answers, and states the rules the
server enforces, so that nothing is a failure of any kind (not a 500, not an undocumented
status, header or content type, not valid data refused nor invalid data taken, not a
deleted resource still there)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pen_devstack import SmtpSink
from tests.conftest import TEARDOWN_STOP_SECONDS, USERS, Pen, make_pen

# Fixed so that a run is repeatable; PEN_FUZZ_SEED=<n> tries others.
SEED = os.environ.get("PEN_FUZZ_SEED", "20261129")
MAX_EXAMPLES = os.environ.get("PEN_FUZZ_EXAMPLES", "25")
# On PostgreSQL (the same server code over another database) fewer examples per call keep the
# suite's time bounded; PEN_FUZZ_EXAMPLES sets both.
MAX_EXAMPLES_POSTGRES = os.environ.get("PEN_FUZZ_EXAMPLES", "10")
# Not fuzzed: the event stream never ends, so no response would come back to check; logging
# out would end the sign-in the fuzzer sends with every request (the tests of test_auth.py
# cover it).
EXCLUDED = r"^/api/v1/(events|auth/logout)$"


# The hourly sending limits are far above what the run sends (each case a new message), so
# that sending is fuzzed to the end rather than answered 429; a small recipient cap keeps the
# longest lists (the cap's boundary) quick to deliver.
LIMITS = {"PEN_MAX_RECIPIENTS": "20", "PEN_SEND_MESSAGES_PER_HOUR": "100000",
          "PEN_SEND_RECIPIENTS_PER_HOUR": "1000000"}


INVITATIONS = 3 * int(LIMITS["PEN_MAX_RECIPIENTS"])  # more than the sign-ups the run tries


@pytest.fixture(scope="module")
def fuzz_pen(tmp_path_factory, database):
    """A PEN of the fuzzer's own, with an SMTP sink of its own: it changes the PEN's settings,
    fills mailboxes and sends notifications to made-up addresses."""
    sink = SmtpSink().start()
    process = make_pen(tmp_path_factory.mktemp("fuzz-pen"), sink, env=LIMITS, database_url=database()).start()
    yield process, sink
    process.stop(TEARDOWN_STOP_SECONDS)
    sink.stop()


def _prepare(process, sink) -> dict:
    """The admin's sign-in (so that the admin calls are fuzzed past 403), a cursor of each
    order, and invitations to guests not yet signed up, from the notifications the SMTP sink
    received, for the hooks (see schemathesis_hooks.py)."""
    cap = int(LIMITS["PEN_MAX_RECIPIENTS"])
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        r = c.post("/auth/login", json={"email": USERS["admin"][0], "password": "correct horse battery"})
        token = r.json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        for n in range(2):
            r = c.post("/messages", json={"to": [{"email": USERS["ann"][0]}], "subject": f"cursor {n}"},
                       headers={"Idempotency-Key": f"fuzz-setup-{n}"})
            assert r.status_code == 201, r.text
        cursors = {}
        for order in ("newest", "oldest"):
            r = c.get("/messages", params={"folder": "sent", "limit": 1, "order": order})
            cursors[order] = r.json()["next_cursor"]
            assert cursors[order], r.text
        for n in range(INVITATIONS // cap):
            guests = [{"email": f"guest-{n}-{i}@outside.example"} for i in range(cap)]
            r = c.post("/messages", json={"bcc": guests, "subject": "invitation"},
                       headers={"Idempotency-Key": f"fuzz-guests-{n}"})
            assert r.status_code == 201, r.text
    mails = sink.handler.wait_for(INVITATIONS + 2, timeout=120)
    invitations = [Pen.link_token(m)[1] for m in mails if m.message["Subject"] == "invitation"]
    assert len(invitations) == INVITATIONS, len(mails)
    return {"url": process.url, "ca": str(process.ca_file), "token": token, "cursors": cursors,
            "max_recipients": cap, "invitations": invitations}


@pytest.mark.timeout(600)
def test_schemathesis_all_checks_find_nothing(fuzz_pen, tmp_path):
    pen = _prepare(*fuzz_pen)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PEN_FUZZ=json.dumps(pen), SCHEMATHESIS_HOOKS="tests.server.schemathesis_hooks",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        pen["url"] + "/api/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        MAX_EXAMPLES_POSTGRES if fuzz_pen[0].database_url.startswith("postgresql") else MAX_EXAMPLES,
        "--seed",
        SEED,
        "--exclude-path-regex",
        EXCLUDED,
        "--tls-verify",
        pen["ca"],
        "--header",
        f"Authorization: Bearer {pen['token']}",
        "--request-timeout",
        "60",
        "--workers",
        "1",
        "--no-color",
        "--output-truncate",
        "true",
    ]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    out = run.stdout + run.stderr
    summary = out[out.find("=== SUMMARY") :] if "=== SUMMARY" in out else out[-3000:]
    print(summary)
    # Lines cut short: a failing case's body can be a quarter of a megabyte of one character.
    assert run.returncode == 0, "\n".join(line[:400] for line in out.splitlines())[-12000:]
    tested = re.search(r"Tested: (\d+)", out)
    generated = re.search(r"(\d+) generated", out)
    assert tested and int(tested.group(1)) >= 18, summary  # every operation but the two excluded
    assert generated and int(generated.group(1)) > 300, summary
    with httpx.Client(base_url=fuzz_pen[0].api, verify=pen["ca"], timeout=30) as c:
        signed_up = [c.get(f"/invitations/{t}").json()["registered"] for t in pen["invitations"]]
    assert any(signed_up), "no valid sign-up was tried: the hooks gave no invitation"
