"""F1 / ?: the keys of the screen below, as a plain list a screen reader can read."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen

from tui.widgets.reading_text import ReadingText
from tui.widgets.safe_static import SafeStatic

KEY_NAMES = {"question_mark": "?", "slash": "/", "asterisk": "*", "enter": "enter", "escape": "escape"}


def describe_keys(screen: Screen) -> str:
    """One line an action: what it does, every key that does it, in words, and the id that
    the ``[keys]`` table of the settings file changes its keys by."""
    actions: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    hidden = getattr(screen, "key_hidden", lambda action: False)  # keys the screen's state leaves out
    for key, active in screen.active_bindings.items():
        b = active.binding
        if not b.description or not (b.id or b.action in ("focus_next", "focus_previous")) or hidden(b.action):
            continue  # Textual's own scrolling keys are noise here
        name = KEY_NAMES.get(key, key.replace("ctrl+", "control+"))
        keys, ids = actions.setdefault((b.description, b.action), ([], []))
        keys.append(name)
        if b.id:
            ids.append(b.id)
    return "\n".join(f"{description}: {' or '.join(dict.fromkeys(keys))}"
                     + (f"  (id {', '.join(dict.fromkeys(ids))})" if ids else "")
                     for (description, _action), (keys, ids) in actions.items())


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close help", id="help.close")]

    def __init__(self, title: str, keys: str) -> None:
        super().__init__()
        self.title_text, self.keys = title, keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield SafeStatic(f"Keys: {self.title_text}  (escape closes)", id="help-title")
            yield ReadingText(self.keys, id="help-keys")

    def on_mount(self) -> None:
        self.query_one("#help-keys", ReadingText).focus()

    async def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
