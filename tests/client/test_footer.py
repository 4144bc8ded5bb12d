"""The one-line footer: the screen's shown keys (the keymap's, disabled ones dimmed), the
command palette's key at the right end, a click presses the key, and it follows focus."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input

from tui.widgets.footer import KeyFooter


class Keys(Screen):
    BINDINGS = [
        Binding("f5", "hit('f5')", "Hit", id="t.hit"),
        Binding("f6", "hit('f6')", "Hidden", show=False),
        Binding("f7", "never", "Never"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def compose(self):
        yield Input(id="field")
        yield KeyFooter()

    def action_hit(self, what: str) -> None:
        self.hits.append(what)

    def check_action(self, action: str, parameters) -> bool | None:
        return None if action == "never" else True  # shown, but disabled


class Host(App):
    def on_mount(self) -> None:
        self.push_screen(Keys())


def line(app) -> str:
    return "".join(seg.text for seg in app.screen.query_one(KeyFooter).render_line(0))


async def test_keys_palette_click_and_keymap():
    app = Host()
    async with app.run_test(size=(60, 5)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(KeyFooter)
        text = line(app)
        assert " f5 Hit " in text and "Hidden" not in text and " f7 Never " in text
        assert text.rstrip().endswith("^p palette")
        keys, palette = footer.keys()
        assert [k.enabled for k in keys] == [True, False] and palette is not None
        # A click on " f5 Hit " presses f5.
        start = text.index(" f5 Hit ")
        await pilot.click(KeyFooter, offset=(start + 2, 0))
        assert app.screen.hits == ["f5"]
        # Another key for the same action through the keymap: the footer shows it.
        app.set_keymap({"t.hit": "f9"})
        await pilot.pause()
        assert " f9 Hit " in line(app)


async def test_a_narrow_footer_keeps_the_keys_and_drops_the_palette_hint():
    app = Host()
    async with app.run_test(size=(20, 5)) as pilot:
        await pilot.pause()
        text = line(app)
        assert text.startswith(" f5 Hit ") and "palette" not in text


def test_keys_that_do_not_fit_are_left_out_whole_and_help_stays():
    from tui.widgets.footer import _Key, fitting

    keys = [_Key("escape", "esc", "Back", True), _Key("r", "r", "Reply", True),
            _Key("n", "n", "Notifications", True), _Key("f1", "f1", "Help", True)]
    assert fitting(keys, 80) == keys  # all fit
    narrow = fitting(keys, 30)  # " esc Back  r Reply " is 19, " f1 Help " 9: Notifications goes
    assert [k.description for k in narrow] == ["Back", "Reply", "Help"]
    assert [k.description for k in fitting(keys, 12)] == ["Help"]
