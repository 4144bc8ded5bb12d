"""Keys are never lost or sent to the wrong place, however fast they come (SSH, a paste, a
macro): each key is delivered only once the one before it has done all it set off.

Why Textual alone loses them: the app hands each key to the focused widget's queue at once,
but a binding runs only when the key has bubbled back up to the app, and a focus change
(``Widget.focus``) or a screen's first focus (in its ``on_mount``) happens later still, as a
callback queued behind the keys already waiting. So in ``/Kim`` the ``K``, ``i`` and ``m``
reach the message list before ``/`` has opened the search field; in compose, the text after
a Tab reaches the field the Tab leaves.

The gate holds every key (and paste) that arrives while the one before is still under way,
and replays them in order, each to the widget focused by then. A character typed into a
field is never under way after it is handed over (a field takes it, nothing else happens),
so text goes at full speed. A key is under way until
 1. it has been through every widget it can bubble through, up to the app (one callback
    queued behind it at each, in turn, so the last runs after the app's bindings), and
 2. what it set off has settled: a round of callbacks up the focused widget's queue and
    each of its parents' to the screen (which runs after the on_mount of a screen just
    pushed) and the app (so a message the key made a field post, an Input's Submitted
    that moves the focus in compose, has been handled) changes neither the screen, nor
    the focus, nor the count of callbacks queued on the app (``App.call_later``, which
    ``Widget.focus`` uses).
A key whose action waits for something (a reply to a message still loading) says so with
``wait_for``; the keys after it wait too, and then reach the screen that action opened.
A terminal sends Escape and a letter that come in one read as alt and that letter (that is
how it sends alt+letter too); penmail binds no alt keys, so an alt key that nothing binds
is taken as the two keys it was typed as. (Escape with a digit or punctuation in one read
comes as alt and that key too: tui/terminal/keys.py makes Textual's parser say so.)

A key that has not settled within WATCHDOG_SECONDS (plus what it waits for) lets the next
one go, so a widget that vanished with the key in its queue cannot stop the keyboard."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual import events
from textual.keys import _character_to_key
from textual.widgets import Input

from tui.terminal.cursor import text_area_class

if TYPE_CHECKING:
    from textual.app import App
    from textual.message_pump import MessagePump

MAX_ROUNDS = 12  # settling rounds for one key; a screen push takes three or four
MAX_HELD = 10_000  # keys waiting; past this they go as they come (a stuck app, not a person)
WATCHDOG_SECONDS = 3.0


class KeyGate:
    def __init__(self, app: App, deliver: Callable[[events.Event], Awaitable[None]]) -> None:
        self.app = app
        self._deliver_now = deliver  # the app's own handling of a key from the terminal
        self._held: deque[events.Event] = deque()
        self._busy = False
        self._generation = 0  # the key under way; callbacks of an earlier one do nothing
        self._watchdog: asyncio.TimerHandle | None = None
        self._waits: list[asyncio.Future] = []  # what the key under way waits for
        self._failed_what = ""
        self.deferred = 0  # callbacks queued with App.call_later (counted by the app)

    @staticmethod
    def takes(event: events.Event) -> bool:
        """A key or a paste from the terminal (not one on its way through the widgets)."""
        return isinstance(event, (events.Key, events.Paste)) and not event.is_forwarded

    @property
    def holding(self) -> int:
        return len(self._held)

    async def arrived(self, event: events.Event) -> None:
        split = self._escape_and_key(event)
        if split:
            for key in split:
                await self.arrived(key)
            return
        if not self._busy:
            await self._deliver(event)
        elif len(self._held) < MAX_HELD:
            self._held.append(event)
        else:  # never lose one: what waits goes now, in order
            while self._held:
                await self._deliver_now(self._held.popleft())
            await self._deliver_now(event)

    def _escape_and_key(self, event: events.Event) -> list[events.Key]:
        """[escape, x] for an alt+x that no binding takes (see the module's note)."""
        if not isinstance(event, events.Key) or not event.key.startswith("alt+") or self._bound(event.key):
            return []
        char = event.character
        if char is not None and len(char) == 1 and char.isprintable():
            key = char if char.isalnum() else _character_to_key(char)
        else:
            key = event.key.removeprefix("alt+")
            char = key if len(key) == 1 else None
        return [events.Key("escape", "\x1b"), events.Key(key, char)]

    def _bound(self, key: str, priority: bool = False) -> bool:
        """A binding for ``key`` on the focused widget, its screen or the app (with priority:
        one that runs before the focused widget sees the key)."""
        try:
            chain = self.app.screen._binding_chain
        except Exception:  # no screen yet
            return False
        return any(not priority or b.priority for _, bindings in chain for b in bindings.key_to_bindings.get(key, ()))

    def wait_for(self, done: Awaitable[object], limit: float, what: str = "") -> None:
        """The key under way is not done until ``done`` is, or ``limit`` seconds have passed;
        the keys typed after it wait with it. When ``done`` ends in False or an error, what it
        was to open did not open: the keys typed for it are not used (they would act on the
        screen below: an a that archives), and a notice says so, naming ``what``.
        Outside a key (the palette) this does nothing."""
        if not self._busy:
            if asyncio.iscoroutine(done):
                done.close()  # nothing waits for it: never started
            return
        self._waits.append(asyncio.ensure_future(_outcome(done)))
        self._failed_what = what or "what they were typed for"
        self._arm_watchdog(self._generation, WATCHDOG_SECONDS + limit)

    def _goes_straight(self, event: events.Event) -> bool:
        """A character (or a paste) for a field that takes it: it moves no focus and opens
        nothing, so the key after it need not wait. Typing runs at full speed this way."""
        if isinstance(event, events.Key) and (not event.is_printable or self._bound(event.key, priority=True)):
            return False
        focused = self.app.focused
        return isinstance(focused, Input) or _editable_text_area(focused)

    async def _deliver(self, event: events.Event) -> None:
        if self._goes_straight(event):
            await self._deliver_now(event)
            return
        self._busy = True
        self._generation += 1
        generation = self._generation
        app = self.app
        target = app.focused or app.screen
        path = list(target.ancestors_with_self)
        self._arm_watchdog(generation, WATCHDOG_SECONDS)
        await self._deliver_now(event)
        self._climb(generation, event, path, 0)

    def _post(self, node: MessagePump, callback: Callable[[], object]) -> bool:
        # Not node.call_later: the app counts its own call_later, and these are the gate's.
        return node.post_message(events.Callback(callback=cast(Any, callback)))

    def _climb(self, generation: int, event: events.Event, path: list, at: int) -> None:
        """A callback behind the key at each node it may bubble to, one after the other,
        until one stopped it (a field took a character): it goes no further up."""
        if generation != self._generation:
            return
        # (Textual still hands a key stopped for having come from the parent to that parent.)
        if at and event._stop_propagation and at < len(path) and path[at] is not event._sender:
            at = len(path)
        if at == len(path):
            self._round(generation, 0)
        elif not self._post(path[at], partial(self._climb, generation, event, path, at + 1)):
            self._climb(generation, event, path, at + 1)  # that node is closing: on to the next

    def _state(self) -> tuple:
        app = self.app
        return app.screen, app.focused, self.deferred

    def _round(self, generation: int, rounds: int) -> None:
        """A callback behind what waits in the queue of the focused widget, then of each of
        its parents up to the screen (which runs after the on_mount of a screen just pushed)
        and the app, one after the other: a message the key made a field post (an Input's
        Submitted, which moves the focus in compose) has been handled by then."""
        before = self._state()
        app = self.app
        path = list((app.focused or app.screen).ancestors_with_self)
        self._follow(path, 0, partial(self._check, generation, rounds, before))

    def _follow(self, path: list, at: int, then: Callable[[], object]) -> None:
        if at == len(path):
            self._post(self.app, then)
        elif not self._post(path[at], partial(self._follow, path, at + 1, then)):
            self._follow(path, at + 1, then)

    async def _check(self, generation: int, rounds: int, before: tuple) -> None:
        if generation != self._generation:
            return
        now = self._state()
        changed = before[0] is not now[0] or before[1] is not now[1] or before[2] != now[2]
        pending = [w for w in self._waits if not w.done()]
        if not pending and any(w.result() is False for w in self._waits):
            self._drop_held()
        if changed and rounds + 1 < MAX_ROUNDS:
            self._round(generation, rounds + 1)
        elif pending:
            asyncio.get_running_loop().create_task(self._after(generation, pending))
        else:
            await self._release()

    def _drop_held(self) -> None:
        if self._held:
            n = len(self._held)
            self._held.clear()
            keys = "key" if n == 1 else "keys"
            # As every other notice: markup=False, the app cleans it (safe text, never markup).
            self.app.notify(f"{n} {keys} typed after it went unused, as {self._failed_what} did not open.",
                            title="Keys", severity="warning", timeout=8, markup=False)  # NOTICE_SECONDS

    async def _after(self, generation: int, pending: list[asyncio.Future]) -> None:
        await asyncio.wait(pending)  # the watchdog lets the keys go if this takes too long
        self._post(self.app, partial(self._round, generation, 0))  # then settle what it set off

    def _arm_watchdog(self, generation: int, seconds: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        expire = partial(self._post, self.app, partial(self._expired, generation))
        self._watchdog = asyncio.get_running_loop().call_later(seconds, expire)

    async def _expired(self, generation: int) -> None:
        if generation == self._generation and self._busy:
            await self._release()

    async def _release(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._busy = False
        for wait in self._waits:
            wait.cancel()
        self._waits.clear()
        while self._held and not self._busy:
            await self._deliver(self._held.popleft())


async def _outcome(done: Awaitable[object]) -> bool:
    """False when what a key waits for ended in False or an error, else True."""
    try:
        return (await done) is not False
    except Exception:
        return False


def _editable_text_area(widget: object) -> bool:
    """A TextArea that takes typing (its class only once imported: tui.terminal.cursor)."""
    text_area = text_area_class()
    return text_area is not None and isinstance(widget, text_area) and not widget.read_only  # type: ignore[attr-defined]
