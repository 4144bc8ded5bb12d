"""The OpenAPI document tells the whole truth: every operation lists each error status it can
answer with, each with the API's one error body and the headers that come with it.

Declared here, in one place, and applied to the document FastAPI builds from the routes: rules
that follow from an operation's shape (signed in: 401; a path id: 404; a JSON body: 400, 408,
413 and 422; everything: 503), then what only some operations answer (ERRORS). A route that is
added needs no entry here unless it answers a status of its own."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from pen_server.sending import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN

PREFIX = "/api/v1"
JSON = "application/json"


class ErrorDetail(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="What went wrong, for programs (snake_case).")
    message: str = Field(description="One sentence for a person: what happened and what to do.")
    fields: dict[str, str] | None = Field(
        default=None, description="Only with 422 validation_failed: each field that is not valid, and why.")


class ErrorOut(BaseModel):
    """Every error the API answers, whatever its status."""
    error: ErrorDetail


# What each status means wherever it is answered; ERRORS may say it more exactly per operation.
MEANING = {
    400: "The request is malformed: a body that is not JSON (`invalid_request`).",
    401: "Not signed in, or the access token is unknown, revoked or expired "
         "(`unauthenticated`, `token_expired`).",
    403: "Signed in, but not allowed to do this (`forbidden`).",
    404: "There is no such thing, or it is not the caller's (`not_found`); never 403 for another's.",
    408: "The request body stopped arriving before it was complete; send it again.",
    409: "It conflicts with what exists (`conflict`, `account_exists`).",
    411: "The request has no Content-Length (`length_required`).",
    413: "The request is larger than the server takes (`too_large`).",
    416: "The range asked for is past the end of the file (`range_not_satisfiable`).",
    422: "A field is not valid (`validation_failed`, with `fields` naming each one and why).",
    429: "Too many requests; wait the seconds of Retry-After (`rate_limited`).",
    503: "The server cannot answer just now; try again after Retry-After seconds (`unavailable`).",
}

_RETRY_AFTER = {"description": "Seconds to wait before trying again.", "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"}}
HEADERS: dict[int, dict[str, dict]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`, where a token was expected.", "schema": {"type": "string"}}},
    409: {"Retry-After": {**_RETRY_AFTER, "required": False}},
    416: {"Content-Range": {"description": "`bytes */<size>`: the file's size.", "required": True,
                            "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"}}},
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}

# Statuses only some operations answer, keyed by (method, path under /api/v1).
ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/auth/login"): {
        401: "The e-mail address or the password is wrong (`invalid_credentials`), the same for both.",
        429: "Too many failed sign-ins for this account; answered before any password hashing.",
    },
    ("post", "/auth/refresh"): {
        401: "The refresh token is unknown, expired, or was used already (then the whole sign-in ends).",
    },
    ("post", "/invitations/{token}/register"): {
        409: "That e-mail address has an account already (`account_exists`); sign in instead.",
    },
    ("post", "/messages"): {
        400: "The body is not JSON, or the Idempotency-Key header is missing or not 1 to 255 "
             "printable ASCII characters (`invalid_request`).",
        403: "A guest wrote to someone who is neither a member nor in its conversations "
             "(`guest_recipient_forbidden`).",
        409: "The same message (same Idempotency-Key) is being sent at this moment, the message that key "
             "sent has been deleted since, or an upload named is part of another message by now (`conflict`).",
        422: "A field is not valid (`validation_failed`): an address, a subject with control characters, "
             "no recipient or more than max_recipients in to, cc and bcc together, an `in_reply_to` or "
             "attachment that is not the sender's, an attachment named twice; or the Idempotency-Key was "
             "used for another message (`idempotency_key_reused`).",
        429: "The sender has sent as many messages or recipients as the PEN allows in one hour (`rate_limited`).",
    },
    ("get", "/messages"): {
        422: "A parameter is not valid (`validation_failed`), or the cursor is not one this server "
             "gave out for this order; or a search (`q`) ran past its time limit and was stopped "
             "(`search_too_long`).",
        429: "The caller has as many searches running as the PEN allows at once (`rate_limited`).",
    },
    ("get", "/threads"): {
        422: "A parameter is not valid (`validation_failed`), or the cursor is not one this server "
             "gave out for this order.",
    },
    ("get", "/threads/{thread_id}"): {
        404: "The caller has no message in that thread (`not_found`).",
        422: "A parameter is not valid (`validation_failed`), or the cursor is not one this server "
             "gave out for this order.",
    },
    ("post", "/uploads"): {
        400: "The body is shorter or longer than its Content-Length (`invalid_request`).",
        408: MEANING[408],
        411: MEANING[411],
        413: "The file is larger than the PEN's max_upload_bytes; answered before the body is read.",
    },
    ("get", "/messages/{message_id}/attachments/{attachment_id}"): {416: MEANING[416]},
    ("get", "/admin/users"): {
        422: "A parameter is not valid (`validation_failed`), or the cursor is not one this server gave out.",
    },
    ("patch", "/admin/users/{user_id}"): {
        409: "The change would leave the PEN without an administrator that can sign in, or takes the caller's "
             "own sign-in or administrator role away (`conflict`).",
        422: "A field is not valid (`validation_failed`): a package that does not exist (the sentence lists the "
             "packages), or a role other than member or admin.",
    },
    ("delete", "/admin/packages/{name}"): {409: "Accounts still have the package (`conflict`)."},
    ("get", "/admin/suppressions"): {
        422: "A parameter is not valid (`validation_failed`), or the cursor is not one this server gave out.",
    },
}

# Request headers the server checks itself (so that it can answer with its own sentence):
# stated in the document as the server enforces them.
HEADER_PARAMETERS: dict[tuple[str, str], dict[str, dict]] = {
    ("post", "/messages"): {"idempotency-key": {
        "required": True,
        "description": "1 to 255 printable ASCII characters, new for each new message; a retry with the "
                       "same key and body within 24 hours answers the first answer again.",
        "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX,
                   "pattern": IDEMPOTENCY_KEY_PATTERN}}},
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


_ANY_TEXT = ({"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]})


def _can_fail(param: dict) -> bool:
    """Whether validating this parameter can refuse a request: any text at all cannot."""
    schema = {k: v for k, v in param.get("schema", {}).items() if k not in ("title", "description", "default")}
    return schema not in _ANY_TEXT or (param.get("required", False) and param["in"] != "path")


def _statuses(method: str, path: str, operation: dict) -> dict[int, str]:
    params = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    found = {503: MEANING[503]}
    if operation.get("security"):
        found[401] = MEANING[401]
    if any(p.get("in") == "path" for p in params):
        found[404] = MEANING[404]
    if JSON in body:
        found.update({400: MEANING[400], 408: MEANING[408], 413: MEANING[413], 422: MEANING[422]})
    if any(_can_fail(p) for p in params):
        found[422] = MEANING[422]
    if "admin" in operation.get("tags", []):
        found[403] = "Only an administrator of this PEN can do that (`forbidden`)."
    found.update(ERRORS.get((method, path), {}))
    return found


def _error_response(status: int, description: str) -> dict:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ERROR_REF}}}
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


def _limits(schemas: dict, settings) -> None:
    """The limits of this PEN's settings, where the schema can state them."""
    for kind in ("to", "cc", "bcc"):  # and to, cc and bcc together: the operation's 422
        schemas["SendIn"]["properties"][kind].update(
            maxItems=settings.max_recipients,
            description=f"At most {settings.max_recipients} in to, cc and bcc together (else 422).")


def complete(document: dict, settings=None) -> dict:
    """The document with every operation's errors (and the limits of `settings`), in place;
    returns it."""
    for full_path, item in document.get("paths", {}).items():
        path = full_path.removeprefix(PREFIX)
        for method, operation in item.items():
            statuses = _statuses(method, path, operation)
            # FastAPI's own 422 (its HTTPValidationError shape) goes; ours replace it.
            responses = {code: r for code, r in operation.get("responses", {}).items() if code[0] in "123"}
            operation["responses"] = responses
            for status, description in sorted(statuses.items()):
                responses[str(status)] = _error_response(status, description)
            for param in operation.get("parameters", []):
                param.update(HEADER_PARAMETERS.get((method, path), {}).get(param["name"].lower(), {}))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's; our 422 is ErrorOut
        schemas.pop(unused, None)
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorOut"] = error_schema
    if settings is not None:
        _limits(schemas, settings)
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at app.openapi_url (built once, on first request)."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes),
                app.state.pen.settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the schema
