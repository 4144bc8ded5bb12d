"""`GET /metrics` at the root, beside /api/v1: Prometheus's text format (metrics.py), for the
addresses in `[metrics] allow` (loopback by default) or a caller with an administrator's token."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request, Response

from pen_server import accounts, metrics
from pen_server.api.deps import BearerDep, ServicesDep
from pen_server.errors import ApiError
from pen_server.signin import client_address

router = APIRouter(tags=["meta"])


def _allowed(request: Request, settings) -> bool:
    """The client's address (the proxy's header believed only as for sign-in limits: a reverse
    proxy on loopback with [limits] trusted_proxy set passes on the real client) is in
    [metrics] allow."""
    found = client_address(request, settings)
    if found is None:
        return False
    ip = ipaddress.ip_address(found)
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.metrics.allow)


@router.get("/metrics", include_in_schema=False)
def read_metrics(request: Request, credentials: BearerDep, pen: ServicesDep):
    settings = pen.settings
    if not settings.metrics.enabled:
        raise ApiError(404, "not_found", "This PEN's metrics are off ([metrics] enabled = false).")
    if not _allowed(request, settings):
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(401, "unauthenticated", "The metrics are open to the addresses in [metrics] allow, or "
                                                   "with an administrator's token; send one.",
                           headers={"WWW-Authenticate": "Bearer"})
        with pen.db.session() as session:
            user, _token = accounts.authenticate(session, credentials.credentials)
            if user.role != "admin":
                raise ApiError(403, "forbidden", "Only an administrator of this PEN can read its metrics.")
    body, content_type = metrics.exposition(pen.db, settings, request.headers.get("accept", ""))
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
