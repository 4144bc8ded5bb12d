"""Helpers for driving penmail's TUI in tests: configs that point at the test PEN, a
memory keyring, and reading what the screen actually rendered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tui.config import Config

C1_OR_ESC = re.compile("[\x1b\x80-\x9f]")


def config_for(pen, who_email: str = "ann@abc.example", tmp: Path | None = None, **over) -> Config:
    fields = dict(server=pen.process.url, ca_file=Path(pen.ca_file), email=who_email,
                  download_dir=tmp or Path("/tmp"))
    fields.update(over)
    return Config(**fields)


@contextmanager
def using_keyring(backend) -> Iterator:
    """``backend`` as the keyring for the block (a real backend class; the one before comes back)."""
    import keyring

    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def at_mailbox(app) -> bool:
    """Signed in and on the mailbox (the mailbox is also the first frame while signing in)."""
    from textual.css.query import NoMatches

    from tui.screens.mailbox import MailboxScreen
    from tui.widgets.message_list import MessageList

    screen = app.screen
    if not (isinstance(screen, MailboxScreen) and screen.signing_in_as is None and app.session is not None):
        return False
    try:  # a new MailboxScreen is the app's screen a moment before its widgets are mounted
        screen.query_one(MessageList)
    except NoMatches:
        return False
    return True


def rendered(app) -> tuple[str, list]:
    """The screen as the terminal would get it: its text, and every segment."""
    strips = app.screen._compositor.render_strips()
    segments = [seg for strip in strips for seg in strip]
    text = "\n".join("".join(seg.text for seg in strip) for strip in strips)
    return text, segments


def assert_clean_render(app) -> str:
    """No ESC or C1 reached the screen, and no span carries a link or a click action:
    penmail itself puts neither on the screen, so any there came from the data."""
    text, segments = rendered(app)
    assert not C1_OR_ESC.search(text), repr(C1_OR_ESC.search(text))
    for seg in segments:
        style = seg.style
        if style is None:
            continue
        assert not style.link, (seg.text, style.link)
        # Markup makes actions with @click; Textual's own widgets use other events (a
        # scrollbar's @mouse.down).
        assert "@click" not in (style.meta or {}), (seg.text, style.meta)
    return text


async def wait_for(pilot, condition, timeout: float = 15.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the TUI; the screen shows:\n" + rendered(pilot.app)[0])
        await pilot.pause(0.05)
        await asyncio.sleep(0)


def record_events(app) -> list[str]:
    """The kinds of the server events the app dispatches, in order (its own handling runs
    unchanged). Install before the app runs; "stream.open" in it means the stream is up."""
    kinds: list[str] = []
    dispatch = app.dispatch_event

    def recording(event) -> None:
        kinds.append(event.kind)
        dispatch(event)

    app.dispatch_event = recording
    app._recorded_event_kinds = kinds
    return kinds


def stream_is_up(app) -> bool:
    """The app's event stream has opened (record_events(app) installed before it ran)."""
    return "stream.open" in getattr(app, "_recorded_event_kinds", ())


BURST_KEY = re.compile(r"<([a-z0-9_+]+)>")


def key_events(text: str) -> list:
    """Key events for ``text`` as a terminal sends it: each character a key, and each
    ``<name>`` (``<tab>``, ``<enter>``, ``<escape>``, ``<f3>``) the key of that name."""
    import unicodedata

    from textual import events
    from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

    keys: list[str] = []
    at = 0
    for named in BURST_KEY.finditer(text):
        keys += list(text[at:named.start()])
        keys.append(named.group(1))
        at = named.end()
    keys += list(text[at:])
    out = []
    for key in keys:
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        if key.startswith("alt+"):  # as a terminal sends alt+c or alt+/: escape, then the character
            rest = key[4:]
            try:
                char = rest if len(rest) == 1 else unicodedata.lookup(_get_unicode_name_from_key(rest))
            except KeyError:
                char = None
        out.append(events.Key(key, char))
    return out


def burst(app, text: str) -> None:
    """Every key of ``text`` (see key_events) posted to the app at once, with no wait between
    them, as a paste, a macro or SSH delivers keys; the caller waits on what should follow."""
    for event in key_events(text):
        event.set_sender(app)
        app.post_message(event)
