"""Every error leaves as {"error": {"code", "message"}}: one sentence for a person."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pen_server")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, fields: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers


def not_found(what: str = "That message") -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist, or is not yours.")


def validation(fields: dict[str, str], message: str | None = None) -> ApiError:
    first = next(iter(fields.values()), "Some fields are not valid.")
    return ApiError(422, "validation_failed", message or first, fields=fields)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    err: dict[str, object] = {"code": code, "message": message}
    if fields is not None:
        err["fields"] = fields
    return {"error": err}


_DEFAULT_CODES = {400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                  405: "invalid_request", 409: "conflict", 411: "length_required", 413: "too_large",
                  416: "range_not_satisfiable", 429: "rate_limited", 503: "unavailable"}


_HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def _field_name(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _allowed_methods(request: Request) -> str | None:
    """Every method the API takes at this path, read from its OpenAPI document (FastAPI's 405
    names only the methods of the first route that matches the path); None off the API."""
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods = {m.upper() for m in item if m in _HTTP_METHODS}
            return ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return None


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.fields), status_code=exc.status, headers=exc.headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        fields: dict[str, str] = {}
        for err in exc.errors():
            name = _field_name(err.get("loc", ()))
            fields.setdefault(name, str(err.get("msg", "is not valid")))
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse(error_body("invalid_request", "The request body is not valid JSON."), status_code=400)
        name, why = next(iter(fields.items()))
        return JSONResponse(error_body("validation_failed", f"The field {name} is not valid: {why}.", fields),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _DEFAULT_CODES.get(exc.status_code, "invalid_request")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else "The request could not be served."
        if exc.status_code == 404:
            message = "There is nothing at that address."
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            message = "That method is not allowed here."
            allowed = _allowed_methods(request)
            headers = {"Allow": allowed} if allowed else headers
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError):
        # PostgreSQL refuses NUL in any text, even to compare (SQLite finds nothing): no
        # address, name or key holds one, so it is answered as such a value would be.
        if "NUL" not in str(exc.orig):
            return await _unexpected(request, exc)
        if "\x00" in request.url.path:
            return JSONResponse(error_body("not_found", "There is nothing at that address."), status_code=404)
        name = next((k for k, v in request.query_params.multi_items() if "\x00" in k + v), "body")
        message = f"The field {name} may not contain the NUL character; leave it out."
        return JSONResponse(error_body("validation_failed", message, {name: message}), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Never a traceback to the client: log it, answer 503 so that clients retry. Tests
        # run with PEN_STRICT_ERRORS=1 so that a bug shows as a 500 and fails them.
        log.exception("unexpected error", exc_info=exc)
        if request.app.state.strict_errors:
            return JSONResponse(error_body("internal", "bug"), status_code=500)
        return JSONResponse(error_body("unavailable", "The server could not answer just now; try again shortly."),
                            status_code=503, headers={"Retry-After": "5"})
