"""The keys of the screen on one line at the bottom, drawn as one widget.

Textual's Footer builds a widget per key and rebuilds them all after every bindings signal
(each focus change, each screen-stack change): at start-up that was a fifth of the time to
the first mailbox frame. This draws the same line (each shown key with its description,
the command palette's key at the right end, disabled keys dimmed) with one render, and a
click on a key presses it, as in Textual's Footer. A key that does not fit is left out
whole, never cut mid-word; the help key, which lists them all, is kept."""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


class _Key(NamedTuple):
    key: str  # what a click presses
    display: str  # how the key is written (the keymap's key, in Textual's notation)
    description: str
    enabled: bool


def _width(item: _Key) -> int:
    return cell_len(f" {item.display} ") + (cell_len(item.description) + 1 if item.description else 0)


def fitting(keys: list[_Key], width: int) -> list[_Key]:
    """The keys that fit in `width` cells, in their order: the first ones, and the help key
    (described "Help") in any case, so that the rest can be looked up."""
    if sum(map(_width, keys)) <= width:
        return keys
    kept = {i for i, item in enumerate(keys) if item.description == "Help"}
    room = width - sum(_width(keys[i]) for i in kept)
    for i, item in enumerate(keys):
        if i in kept:
            continue
        if _width(item) > room:
            break
        kept.add(i)
        room -= _width(item)
    return [item for i, item in enumerate(keys) if i in kept]


class KeyFooter(Widget):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-footer--key", "key-footer--description"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    KeyFooter > .key-footer--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyFooter > .key-footer--description {
        color: $footer-description-foreground;
        background: $footer-description-background;
    }
    """

    def __init__(self, *, show_command_palette: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.show_command_palette = show_command_palette
        self._spans: list[tuple[int, int, str]] = []  # (start, end, key) for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, screen: Screen) -> None:
        if screen is self.screen:
            self.refresh()

    def keys(self) -> tuple[list[_Key], _Key | None]:
        """The keys shown (one per action, the first bound), and the command palette's."""
        app = self.app
        shown: dict[str, _Key] = {}
        palette = None
        hidden = getattr(self.screen, "key_hidden", lambda action: False)  # keys the screen's state leaves out
        for key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            if hidden(binding.action):
                continue
            item = _Key(key, app.get_key_display(binding), binding.description, enabled)
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = item if self.show_command_palette else None
            elif binding.show and binding.action not in shown:
                shown[binding.action] = item
        return list(shown.values()), palette

    def render(self) -> Text:
        keys, palette = self.keys()
        key_style = self.get_component_rich_style("key-footer--key")
        text_style = self.get_component_rich_style("key-footer--description")
        line = Text(no_wrap=True, overflow="crop", end="")
        spans: list[tuple[int, int, str]] = []

        dim = Style(dim=True)

        def add(item: _Key) -> None:
            start = len(line)
            line.append(f" {item.display} ", key_style if item.enabled else key_style + dim)
            if item.description:
                line.append(f"{item.description} ", text_style if item.enabled else text_style + dim)
            spans.append((start, len(line), item.key))

        for item in fitting(keys, self.size.width):
            add(item)
        if palette is not None:
            right = Text.assemble(("\u258f", text_style + dim), (f" {palette.display} ", key_style),
                                  (f"{palette.description} ", text_style))
            gap = self.size.width - len(line) - len(right)
            if gap >= 0:
                line.append(" " * gap)
                start = len(line)
                line.append_text(right)
                spans.append((start, len(line), palette.key))
        self._spans = spans
        return line

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
