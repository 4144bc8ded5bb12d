"""Escape typed in one burst with the key after it reaches penmail as those two keys.

A terminal sends Escape as the one byte ESC, and alt+x as ESC x; a burst (SSH, a paste, tmux
send-keys) puts Escape and the next key in one read, so the two look alike. Textual 8's
parser reads ESC followed by anything as the start of an escape sequence and waits for more:
ESC and a letter end, after ESCAPE_DELAY, as alt+letter (which the key gate splits again), but
ESC and a digit or punctuation (``/``, ``?``, ``:``) lose the Escape altogether, so Escape
``/from:okafor`` in the reader became ``/`` ``f``... and ``f`` forwarded the message.

ESC can start a sequence only with one of a few characters (CSI ``[``, SS3 ``O``, OSC ``]``,
DCS ``P``, APC ``_``, PM ``^``, SOS ``X``); followed by any other printable character it is
alt and that key, decided at once. The key gate (tui/terminal/key_gate.py) then splits an alt key
that nothing binds into Escape and the key, which is what the person typed."""

from __future__ import annotations

from collections.abc import Iterable

from textual import events
from textual._xterm_parser import XTermParser

ESC = "\x1b"
_INTRODUCERS = frozenset("[O]P_^X" + ESC)


class BurstParser(XTermParser):
    """Textual's parser, but ESC and a character that cannot open a sequence is alt+key."""

    def _sequence_to_key_events(self, sequence: str, alt: bool = False) -> Iterable[events.Key]:
        if len(sequence) == 2 and sequence[0] == ESC and sequence[1] not in _INTRODUCERS and sequence[1].isprintable():
            char = sequence[1]
            for key in super()._sequence_to_key_events(char, alt=True):
                name = key.key if key.key.startswith("alt+") else f"alt+{key.key}"
                yield events.Key(name, char)
            return
        yield from super()._sequence_to_key_events(sequence, alt)


def install() -> None:
    """Make the terminal drivers read keys with BurstParser (penmail's own process only).

    Textual's drivers construct ``XTermParser`` by its module-level name and offer no hook to
    pass another class; Textual is pinned exactly (pyproject.toml), and
    tests/client/test_key_bursts_tmux.py checks this path in a real terminal."""
    from textual.drivers import linux_driver, linux_inline_driver

    linux_driver.XTermParser = BurstParser  # type: ignore[misc]
    linux_inline_driver.XTermParser = BurstParser  # type: ignore[misc]
