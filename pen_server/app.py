"""The ASGI application: routes under /api/v1, error handling, and the services the routes
share (database, blob store, event hub, delivery worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import FastAPI
from sqlalchemy import delete, exists, select

from pen_server import accounts, errors, openapi, security
from pen_server.api import admin, attachments, auth, health, messages, threads
from pen_server.api import metrics as metrics_route
from pen_server.db import Database
from pen_server.events import EventHub
from pen_server.middleware import BodyLimit
from pen_server.models import Attachment, Blob, utcnow
from pen_server.ratelimit import Rule, SignInLimiter
from pen_server.search_run import SearchSlots
from pen_server.settings import Settings
from pen_server.storage import BlobStore, StoreUnavailable, open_store

if TYPE_CHECKING:
    from pen_server.outbox import DeliveryWorker

log = logging.getLogger("pen_server")
UPLOAD_TTL = timedelta(hours=24)


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    secret: bytes
    hub: EventHub = field(default_factory=EventHub)
    limiter: SignInLimiter | None = None
    hashing: security.HashPool | None = None
    search_slots: SearchSlots | None = None
    signin_threads: object | None = None  # made by signin.off_routes_pool on first use
    worker: DeliveryWorker | None = None
    draining: bool = False  # SIGTERM came: not ready, streams ended, in-flight requests finish
    not_ready: str | None = None  # what /health/ready found not answering last time (api/health.py)

    def stopping(self) -> None:
        self.draining = True
        self.hub.end_all()

    def __post_init__(self):
        s = self.settings
        if self.limiter is None:
            self.limiter = SignInLimiter(self.db, Rule(s.signin_free_failures, s.signin_max_delay),
                                         Rule(s.address_free_failures, s.address_max_delay),
                                         Rule(s.account_free_failures, s.signin_max_delay),
                                         forget_after=s.signin_forget_seconds)
        if self.hashing is None:
            self.hashing = security.HashPool(s.hash_workers, s.hash_queue)
        if self.search_slots is None:
            self.search_slots = SearchSlots(s.searches_per_user, s.search_seconds)

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()


def read_secret(settings: Settings) -> bytes:
    path = settings.data_dir / "secret.key"
    return bytes.fromhex(path.read_text().strip())


def remove_stale_uploads(services: Services) -> int:
    """Uploads that no message took within a day go, and so do blobs nothing refers to.

    Race-free with an upload of the same bytes: the first statement is a write, so this
    transaction holds the database's write lock from its start; each blob row is deleted only
    if no attachment refers to it, and its file is removed before the commit, still under
    that lock. An upload writes its attachment row first (waiting for the lock) and only then
    looks for the file, putting its own copy in place when the file is gone."""
    with services.db.session() as session:
        cutoff = utcnow() - UPLOAD_TTL
        removed = session.execute(delete(Attachment).where(Attachment.message_id.is_(None),
                                                           Attachment.created_at < cutoff)).rowcount
        unused = ~exists().where(Attachment.sha256 == Blob.sha256)
        for sha in list(session.scalars(select(Blob.sha256).where(unused))):
            gone = session.execute(delete(Blob).where(Blob.sha256 == sha, unused)
                                   .execution_options(synchronize_session=False)).rowcount
            if gone:
                services.blobs.remove(sha)
    return removed


async def _every(seconds: float, fn, what: str) -> None:
    """fn() in a thread now and every `seconds`; a failure is logged and tried next round."""
    while True:
        try:
            await asyncio.to_thread(fn)
        except Exception:  # keep serving; the next round tries again
            log.exception("%s failed", what)
        await asyncio.sleep(seconds)


async def _look_at_store(blobs: BlobStore) -> None:
    """Say at start-up, in the log, when the attachment store does not answer (the server
    serves anyway: everything but attachments works, and the store may come back)."""
    try:
        await blobs.check()
    except StoreUnavailable as exc:
        log.warning("%s", exc.message)


def _clean_uploads(services: Services) -> None:
    remove_stale_uploads(services)
    # Another process (or host) may be writing an upload this very minute: only a
    # crash's leftovers, older than a day, go.
    services.blobs.clean_temp(UPLOAD_TTL.total_seconds())


def create_app(settings: Settings, *, run_worker: bool | None = None, bounce_socket=None) -> FastAPI:
    """`bounce_socket`: a listening socket on which to take bounces by SMTP (serve() binds it
    before anything starts, so that a port in use is one sentence, not a failed start-up)."""
    security.ready()
    db = Database(settings.database_url)
    hub = EventHub(db, max_streams=settings.max_event_streams, keep_hours=settings.events_keep_hours)
    services = Services(settings=settings, db=db, blobs=open_store(settings), secret=read_secret(settings), hub=hub)

    async def signed_in(token: str) -> bool:
        def check() -> bool:
            with db.session() as session:
                return accounts.signed_in(session, token)
        return await asyncio.to_thread(check)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.bind(asyncio.get_running_loop())
        log.info("attachments in %s", services.blobs.describe())
        tasks = [asyncio.create_task(_every(3600, lambda: _clean_uploads(services), "cleaning stale uploads")),
                 asyncio.create_task(_look_at_store(services.blobs)),
                 asyncio.create_task(_every(60, services.limiter.prune, "pruning sign-in counts")),
                 asyncio.create_task(_every(600, hub.prune, "pruning old events")),
                 asyncio.create_task(hub.run())]
        if hub.postgres:
            tasks.append(asyncio.create_task(hub.listen()))
        if settings.deliverability.dnsbl_zones:
            from pen_server.deliverability import watch

            tasks.append(asyncio.create_task(watch(db, settings)))
        bounce_server = None
        if bounce_socket is not None:
            from pen_server.bounces import BouncePort

            bounce_server = BouncePort(settings.data_dir, bounce_socket)
            log.info("taking bounces by SMTP on %s:%s", settings.bounce_host, settings.bounce_port)
        if settings.delivery_in_api if run_worker is None else run_worker:
            from pen_server.outbox import DeliveryWorker

            services.worker = DeliveryWorker(db, settings, services.secret, services.hub)
            tasks.append(asyncio.create_task(services.worker.run()))
        try:
            yield
        finally:
            if bounce_server is not None:
                await bounce_server.stop()
            if services.worker is not None:
                await services.worker.stop_within()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            services.hashing.shutdown()
            await services.blobs.close()
            db.dispose()

    app = FastAPI(title="PEN API", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.pen = services
    app.state.strict_errors = os.environ.get("PEN_STRICT_ERRORS") == "1"
    errors.install(app)
    app.add_middleware(BodyLimit, small=settings.max_json_bytes, large=settings.max_message_bytes,
                       signed_in=signed_in, stall_seconds=settings.body_timeout_seconds)
    for module in (auth, messages, threads, attachments, admin, health):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(metrics_route.router)  # at the root, where Prometheus looks

    from pen_server import web

    web.install(app)

    openapi.install(app)

    return app
