"""`pen-server worker`: delivery alone, without HTTP, so that sending scales apart from
serving. Any number of them (and of API processes that deliver too) can share one database:
each claims its notifications under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so no
notification goes to two of them at once. Its events (`notification.updated`) are written to
the events table, where the API processes pick them up (NOTIFY on PostgreSQL, a look every
second on SQLite). SIGTERM or SIGINT: the sends in flight finish and are recorded (at most
outbox.STOP_SECONDS), the rest is handed back, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from pen_server.app import read_secret
from pen_server.db import Database, migrate
from pen_server.events import EventHub
from pen_server.serve import log_to
from pen_server.settings import Settings

log = logging.getLogger("pen_server")


def run_worker(settings: Settings, log_file: Path | None = None) -> int:
    from pen_server.outbox import DeliveryWorker

    log_to(log_file or settings.log_file, settings.log_format)
    migrate(settings.database_url)
    db = Database(settings.database_url)
    hub = EventHub(db)
    worker = DeliveryWorker(db, settings, read_secret(settings), hub)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(worker.run())
        # On PostgreSQL a new message's event (NOTIFY) starts a pass at once; else a look a second.
        listen = asyncio.create_task(hub.listen(also=worker.wake)) if hub.postgres else None
        print(f"pen-server worker delivering notifications, data in {settings.data_dir}", flush=True)
        log.info("delivery worker %s started", worker.owner[:8])
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        await worker.stop_within()
        for running in (task, stopped, listen):
            if running is not None:
                running.cancel()
        await asyncio.gather(*(t for t in (task, stopped, listen) if t is not None), return_exceptions=True)
        log.info("delivery worker %s stopped", worker.owner[:8])

    try:
        asyncio.run(main())
    finally:
        db.dispose()
    return 0
