"""schemathesis hooks for test_schema_fuzz (loaded by the `schemathesis run` it starts).

A schema states the shape of a request, not which things exist: a cursor this server gave
out (of the messages, or of the administrator's lists), a message the caller can read, the
caller's own uploads and attachments, a package that exists, an
invitation not yet used, an Idempotency-Key not used for another message, a q that the
search language reads; nor a sum (recipients in to, cc and bcc together), nor the time
now (an end date in the future, a real day for `since`), nor who a message went to. For a request
generated as valid, those are given real values just
before it is sent, so that positive_data_acceptance judges everything else the schema says.
Requests generated as invalid are sent as generated."""

from __future__ import annotations

import functools
import json
import os
import uuid

import httpx
import schemathesis

PEN = json.loads(os.environ["PEN_FUZZ"])  # url, ca, token, cursors, max_recipients, invitations
UNUSED_INVITATIONS = list(PEN["invitations"])  # each guest signs up once; later ones get 409
MAX_UPLOADS = 5  # per request: enough to cover a list of several, quick to make


@functools.cache
def _client() -> httpx.Client:
    """The hooks' one client for the run, its connection kept: a client per case would cost a
    TLS context and handshake on both sides each time (the process's end closes it)."""
    return httpx.Client(
        base_url=PEN["url"] + "/api/v1",
        verify=PEN["ca"],
        timeout=30,
        headers={"Authorization": f"Bearer {PEN['token']}"},
    )


def _readable_message(client: httpx.Client) -> str:
    """A message the caller can read now (the run may have deleted any earlier one)."""
    r = client.post(
        "/messages",
        json={"to": [{"email": "ann@abc.example"}], "subject": "fuzz reply target"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    r.raise_for_status()
    return r.json()["id"]


def _uploads(client: httpx.Client, count: int) -> list[str]:
    ids = []
    for i in range(count):
        r = client.post(
            "/uploads",
            params={"filename": f"fuzz-{i}.txt"},
            content=b"%064d" % i,
            headers={"Content-Type": "text/plain"},
        )
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


def _attachment(client: httpx.Client) -> dict[str, str]:
    """A message the caller can read with one attachment of 64 bytes, for the download."""
    upload = _uploads(client, 1)
    r = client.post(
        "/messages",
        json={"to": [{"email": "ann@abc.example"}], "attachments": upload},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    r.raise_for_status()
    return {"message_id": r.json()["id"], "attachment_id": r.json()["attachments"][0]["id"]}


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    method, path = case.operation.method.upper(), case.operation.path
    if method == "GET" and path == "/api/v1/messages" and case.query and case.query.get("cursor"):
        case.query["cursor"] = PEN["cursors"][case.query.get("order") or "newest"]
    if method == "GET" and path.startswith("/api/v1/threads") and case.query and case.query.get("cursor"):
        # The thread calls page by the same keys as GET /messages, with the same cursors; one
        # thread's messages come oldest first unless asked otherwise.
        default = "oldest" if path.endswith("{thread_id}") else "newest"
        case.query["cursor"] = PEN["cursors"][case.query.get("order") or default]
    if method == "GET" and path in ("/api/v1/admin/users", "/api/v1/admin/suppressions") and case.query \
            and case.query.get("cursor"):
        # The administrator's lists page by address: a cursor of theirs names any address.
        from pen_server import paging

        case.query["cursor"] = paging.encode("m@abc.example")
    if method == "PATCH" and path == "/api/v1/admin/users/{user_id}" and isinstance(case.body, dict) \
            and isinstance(case.body.get("package"), str):
        case.body["package"] = "employees"  # one of the PEN's packages (any other is 422, listing them)
    if method == "GET" and path == "/api/v1/messages" and case.query and isinstance(case.query.get("q"), str):
        # The search language (docs/pen-api.md, "Search") is a grammar the schema cannot state:
        # a generated q becomes one it reads (no double quote, no colon to look like a key).
        case.query["q"] = case.query["q"].replace('"', " ").replace(":", " ")
    if path.startswith("/api/v1/invitations/"):
        token = PEN["invitations"][0]
        if method == "POST" and UNUSED_INVITATIONS:
            token = UNUSED_INVITATIONS.pop()
        case.path_parameters = {**(case.path_parameters or {}), "token": token}
    if method == "GET" and path == "/api/v1/messages/{message_id}/attachments/{attachment_id}":
        # Made anew: the run may delete any message it can list.
        case.path_parameters = {**(case.path_parameters or {}), **_attachment(_client())}
    if method == "POST" and path == "/api/v1/messages" and isinstance(case.body, dict):
        case.headers = {**(case.headers or {}), "idempotency-key": uuid.uuid4().hex}
        room = PEN["max_recipients"]  # to, cc and bcc together: a sum no schema can state
        for kind in ("to", "cc", "bcc"):
            if isinstance(case.body.get(kind), list):
                case.body[kind] = case.body[kind][:room]
                room -= len(case.body[kind])
        if case.body.get("in_reply_to") is not None:
            case.body["in_reply_to"] = _readable_message(_client())
        if case.body.get("attachments"):
            case.body["attachments"] = _uploads(_client(), min(len(case.body["attachments"]), MAX_UPLOADS))

    if method in ("POST", "PUT") and isinstance(case.body, dict) and isinstance(case.body.get("expires_at"), str):
        case.body["expires_at"] = "2999-01-01T00:00:00Z"  # an end date must be in the future
    if method == "POST" and path.endswith("/revoke") and isinstance(case.body, dict) \
            and isinstance(case.body.get("recipients"), list):
        case.body["recipients"] = []  # the message's own recipients, which no schema names
    if path.endswith("/audit") and case.query:
        if case.query.get("cursor"):
            case.query["cursor"] = "YXVkaXR8MQ"  # audit|1: a cursor of this server's
        if case.query.get("since"):
            case.query["since"] = "2026-01-01"  # the pattern admits days that no calendar has
