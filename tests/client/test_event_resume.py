"""The client's event stream resumes where it left off: a reconnect sends Last-Event-ID, so
what arrived while it was away is replayed by the real PEN (over TLS), and the caller is
told it need not fetch its lists again; a PEN that cannot replay says resync."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import PASSWORD, USERS
from tui.pen_client import Event, PenClient


async def _take(stream, wanted: int, timeout: float = 30.0) -> list[Event]:
    """The next `wanted` events of `stream` that are not comments."""
    got: list[Event] = []

    async def run() -> None:
        async for event in stream:
            got.append(event)
            if len(got) == wanted:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_a_reconnect_replays_what_came_while_away(pen, send):
    subject = f"While away {uuid.uuid4().hex[:8]}"
    async with PenClient(pen.api.removesuffix("/api/v1"), ca_file=pen.ca_file) as client:
        await client.login(USERS["cat"][0], PASSWORD)
        first = client.events()
        [opened] = await _take(first, 1)
        assert opened.kind == "stream.open" and not opened.caught_up  # nothing to resume from
        send("ann", ["cat"], subject=subject + " 1")
        [new] = await _take(first, 1)
        assert new.kind == "message.new"
        await first.aclose()  # the connection drops

        send("ann", ["cat"], subject=subject + " 2")  # arrives while the client is away
        second = client.events()
        opened, replayed = await _take(second, 2)
        await second.aclose()
    assert opened.kind == "stream.open" and opened.caught_up
    assert replayed.kind == "message.new" and replayed.data["id"] != new.data["id"]


async def test_an_id_the_pen_cannot_replay_from_gets_resync(pen):
    async with PenClient(pen.api.removesuffix("/api/v1"), ca_file=pen.ca_file) as client:
        await client.login(USERS["cat"][0], PASSWORD)
        client._last_event_id = "999999999999"  # never given out by this PEN
        stream = client.events()
        opened, resync = await _take(stream, 2)
        await stream.aclose()
    assert opened.kind == "stream.open" and opened.caught_up
    assert resync.kind == "resync"
