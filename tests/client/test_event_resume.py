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


async def test_lists_then_the_stream_miss_nothing_between_them(pen, send):
    """GET /messages, /threads and /folders name the PEN's newest event (Pen-Event-Id); a
    first stream opens from the oldest of those the client read, so a message that came
    between the lists and the stream is replayed and the caller need not fetch again."""
    subject = f"Between {uuid.uuid4().hex[:8]}"
    async with PenClient(pen.api.removesuffix("/api/v1"), ca_file=pen.ca_file) as client:
        await client.login(USERS["cat"][0], PASSWORD)
        ids = []
        for path in ("/messages", "/threads", "/folders"):
            r = await client._call("GET", path)
            ids.append(r.headers["Pen-Event-Id"])
        assert all(i.isdigit() for i in ids) and int(ids[0]) <= int(ids[1]) <= int(ids[2])
        await client.folders()
        await client.list_messages("inbox")
        listed = client._listed_at
        assert listed is not None and listed >= int(ids[2])
        sent = send("ann", ["cat"], subject=subject)  # after the lists, before the stream
        stream = client.events()
        opened, replayed = await _take(stream, 2)
        await stream.aclose()
    assert opened.kind == "stream.open" and opened.caught_up
    assert replayed.kind == "message.new" and replayed.data["id"] == sent["id"]


async def test_an_id_the_pen_cannot_replay_from_gets_resync(pen):
    async with PenClient(pen.api.removesuffix("/api/v1"), ca_file=pen.ca_file) as client:
        await client.login(USERS["cat"][0], PASSWORD)
        client._last_event_id = "999999999999"  # never given out by this PEN
        stream = client.events()
        opened, resync = await _take(stream, 2)
        await stream.aclose()
    assert opened.kind == "stream.open" and opened.caught_up
    assert resync.kind == "resync"
