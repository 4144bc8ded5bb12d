"""The events table behind GET /events (pen_server/events.py), in process on SQLite and
PostgreSQL: a reconnect replays only the caller's own events after its Last-Event-ID, and never
more than REPLAY_MAX; what cannot be replayed whole (too many, pruned, an id that is not
ours) is one `resync` instead, so a stranger's Last-Event-ID cannot cause an unbounded
replay. Over HTTP: tests/server/test_fleet.py and test_processes.py."""

from datetime import timedelta

import pytest
from sqlalchemy import insert

from pen_server import events
from pen_server.db import Database, migrate
from pen_server.events import REPLAY_MAX, EventHub, parse_event_id
from pen_server.models import Event, utcnow


@pytest.fixture
def hub(tmp_path, database):
    url = database() or f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    db = Database(url)
    yield EventHub(db)
    db.dispose()


def _ids(replayed):
    return [event_id for event_id, _ in replayed]


def test_only_the_caller_s_own_events_after_the_id_in_order(hub):
    hub.publish_many([("ann", "message.new", {"id": f"m{i}"}) if i % 2 else ("bob", "message.new", {"id": f"m{i}"})
                      for i in range(10)])
    everything, resync = hub.replay("ann", 0)
    assert resync is None and len(everything) == 5
    assert all("event: message.new" in text and text.startswith(f"id: {i}\n") for i, text in everything)
    later, _ = hub.replay("ann", _ids(everything)[1])
    assert _ids(later) == _ids(everything)[2:]
    assert hub.replay("ann", _ids(everything)[-1]) == ([], None)


def test_more_than_replay_max_is_one_resync(hub):
    with hub.db.session() as s:
        s.execute(insert(Event), [{"user_id": "ann", "kind": "message.new", "payload": {}, "created_at": utcnow()}
                                  for _ in range(REPLAY_MAX + 1)])
    replayed, resync = hub.replay("ann", 0)
    assert replayed == [] and resync == REPLAY_MAX + 1
    replayed, resync = hub.replay("ann", 1)  # exactly REPLAY_MAX missed: all of them
    assert len(replayed) == REPLAY_MAX and resync is None


def test_pruned_events_and_ids_that_are_not_ours_are_a_resync(hub):
    hub.keep = timedelta(0)
    hub.publish_many([("ann", "message.new", {"id": "old"})] * 3)
    assert hub.prune() == 3
    hub.keep = timedelta(hours=24)
    hub.publish("ann", "message.new", {"id": "new"})
    assert hub.replay("ann", 1) == ([], 4)  # 2 and 3 are gone: the client must fetch again
    assert hub.replay("ann", 3)[1] is None and len(hub.replay("ann", 3)[0]) == 1
    assert hub.replay("ann", 99) == ([], 4)  # from the future: not ours
    assert hub.replay("ann", None) == ([], 4)
    for header in ("abc", "-1", "1e3", "١٢", "9" * 19, ""):
        assert parse_event_id(header) is None, header
    assert parse_event_id(" 42 ") == 42


def test_a_stalled_reader_is_ended_not_silently_short(hub):
    import asyncio

    async def run():
        hub.bind(asyncio.get_running_loop())
        hub.queue_size = 3
        sub = hub.subscribe("ann", "family")
        for i in range(1, 6):
            sub.put((i, events.frame(i, "message.new", {})))
        assert sub.ended and sub.queue.qsize() == 1 and sub.queue.get_nowait() is events.END

    asyncio.run(run())
